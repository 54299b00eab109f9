"""A program written against ``megabus schema`` alone: nats-py and JSON, nothing of megabus.

Usage: schema_only.py SCHEMA.json NATS_URL CREDENTIALS.json NODE

Runs ``vlans add``, ``vlans``, a KVM VM's launch, kill and flush on NODE and
follows the VM's events; prints one JSON object of what it saw.
"""

import asyncio
import json
import sys

import nats


def token(name: str) -> str:
    # as the schema's token_encoding says
    if not name:
        return "%"
    safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return "".join(c if c in safe else "".join(f"%{b:02X}" for b in c.encode()) for c in name)


async def main(schema: dict, creds: dict) -> None:
    url, node = sys.argv[2], sys.argv[4]
    subjects = {s["name"]: s for s in schema["subjects"]}
    messages = schema["messages"]

    def tag(name: str) -> str:
        return messages[name]["properties"]["type"]["enum"][0]

    def subject(name: str, **names: str) -> str:
        text = subjects[name]["subject"].replace("{prefix}", "mb")
        for key, value in names.items():
            text = text.replace("{" + key + "}", token(value))
        return text

    def check(name: str, data: dict) -> None:
        missing = set(messages[name].get("required", [])) - set(data)
        assert not missing, f"{name} without {missing}"

    nc = await nats.connect(url, user=creds["user"], password=creds["password"])
    events = await nc.subscribe(subject("event", namespace="minimega", kind="vm"))
    reply_names = {tag(n): n for n in subjects["node_cmd"]["replies"]}

    async def command(line: str) -> list:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        request = {"type": tag("CommandRequest"), "line": line}
        check("CommandRequest", request)
        await nc.publish(
            subject("node_cmd", node=node),
            json.dumps(request).encode(),
            reply=inbox,
            headers={schema["schema_header"]: tag("CommandRequest")},
        )
        batches = []
        while True:
            msg = await sub.next_msg(timeout=30)
            data = json.loads(msg.data)
            name = reply_names[data["type"]]
            check(name, data)
            if name == "ErrorReply":
                raise SystemExit(data["error"])
            if name == "CommandReply":
                batches.append(data)
                if not data.get("more", False):
                    break
        await sub.unsubscribe()
        return batches

    out = {}
    await command("vlans add lab 301")
    (listed,) = await command("vlans")
    out["vlans"] = [r["tabular"] for r in listed["responses"]]
    out["error"] = [r["error"] for b in await command("vlans add lab 302") for r in b["responses"]]
    for line in ("vm launch kvm sch1", "vm kill sch1", "vm flush"):
        await command(line)
    seen = []
    while len(seen) < 3:
        msg = await events.next_msg(timeout=30)
        data = json.loads(msg.data)
        assert data["type"] == tag("Event"), data
        check("Event", data)
        seen.append([data["name"], data["detail"]["action"], data["detail"]["state"]])
    out["events"] = seen
    out["megabus_modules"] = sorted(m for m in sys.modules if m.startswith("megabus"))
    await nc.close()
    print(json.dumps(out))


with open(sys.argv[1]) as schema_file, open(sys.argv[3]) as creds_file:
    asyncio.run(main(json.load(schema_file), json.load(creds_file)))
