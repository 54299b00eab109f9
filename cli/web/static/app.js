// The megabus web page: the VM table (a virtual list: only the rows in view
// are in the DOM, so hundreds of VMs cost what a screenful costs), live
// screenshots of the rows in view, the command box, the topology graph and
// the files. The table follows the server's websocket; nothing here polls a VM
// but the thumbnails in view.
const ROW = 60;               // px, as .row in style.css
const SHOT_EVERY = 5000;      // ms between two screenshots of a row in view
const vms = new Map();        // key -> vm
let order = [];               // filtered, sorted keys
const list = document.getElementById("vmlist");
const spacer = document.getElementById("spacer");
const nsfilter = document.getElementById("nsfilter");
const textfilter = document.getElementById("textfilter");

function cell(text, cls) {
  const s = document.createElement("span");
  s.textContent = text;
  if (cls) s.className = cls;
  return s;
}

function shotURL(vm) {
  const tick = Math.floor(Date.now() / SHOT_EVERY);
  return `/api/vm/${encodeURIComponent(vm.namespace)}/${encodeURIComponent(vm.name)}/screenshot.png?size=160&t=${tick}`;
}

function rowOf(vm, i) {
  const row = document.createElement("div");
  row.className = "row vm";
  row.style.top = `${i * ROW}px`;
  row.dataset.key = vm.key;
  row.dataset.state = vm.state;
  const shot = document.createElement("span");
  if (vm.type === "kvm" && vm.state === "RUNNING") {
    const img = document.createElement("img");
    img.className = "shot";
    img.alt = `screen of ${vm.name}`;
    img.src = shotURL(vm);
    shot.append(img);
  }
  const link = document.createElement("span");
  if (vm.type === "kvm" && vm.vnc_port) {
    const a = document.createElement("a");
    a.href = `/console/${encodeURIComponent(vm.namespace)}/${encodeURIComponent(vm.name)}`;
    a.target = "_blank";
    a.textContent = "vnc";
    link.append(a);
  }
  row.append(shot, cell(vm.name, "name"), cell(vm.namespace), cell(vm.host),
             cell(vm.state, `state state-${vm.state}`), cell(vm.type), cell(vm.vlan, "vlan"), link);
  return row;
}

function refilter() {
  const ns = nsfilter.value;
  const text = textfilter.value.toLowerCase();
  order = [...vms.values()]
    .filter(v => !ns || v.namespace === ns)
    .filter(v => !text || `${v.name} ${v.host} ${v.state} ${v.vlan}`.toLowerCase().includes(text))
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.id - b.id)
    .map(v => v.key);
  document.getElementById("count").textContent = `${order.length} of ${vms.size} VMs`;
  spacer.style.height = `${order.length * ROW}px`;
  const names = new Set([...vms.values()].map(v => v.namespace));
  const have = new Set([...nsfilter.options].map(o => o.value));
  for (const n of [...names].sort()) {
    if (!have.has(n)) nsfilter.append(new Option(n, n));
  }
  draw();
}

function draw() {
  const first = Math.max(0, Math.floor(list.scrollTop / ROW) - 2);
  const last = Math.min(order.length, first + Math.ceil(list.clientHeight / ROW) + 4);
  for (const old of list.querySelectorAll(".row.vm")) old.remove();
  for (let i = first; i < last; i++) list.append(rowOf(vms.get(order[i]), i));
}

// Chromium aborts the requests in flight whenever the host's interfaces change
// (net::ERR_NETWORK_CHANGED), as they do each time a guest's tap comes or goes
// on a host that runs the browser too: reads are asked again, a command is not
// (it may have reached the node).
async function get(url) {
  for (let i = 0; ; i++) {
    try {
      return await fetch(url);
    } catch (err) {
      if (i >= 4) throw err;
      await new Promise(done => setTimeout(done, 250 * (i + 1)));
    }
  }
}

let graphTimer = null;
function graphSoon() {
  if (graphTimer) return;
  graphTimer = setTimeout(async () => {
    graphTimer = null;
    const r = await get("/api/topology.svg");
    document.getElementById("graph").innerHTML = r.ok ? await r.text() : `<p>${await r.text()}</p>`;
  }, 300);
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onmessage = ev => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "snapshot") {
      vms.clear();
      for (const v of msg.vms) vms.set(v.key, v);
    } else if (msg.type === "namespace") {
      for (const [k, v] of vms) if (v.namespace === msg.namespace) vms.delete(k);
      for (const v of msg.vms) vms.set(v.key, v);
    } else if (msg.type === "vm") {
      vms.set(msg.vm.key, msg.vm);
    }
    refilter();
    graphSoon();
  };
  ws.onclose = () => setTimeout(connect, 1000);
}

document.getElementById("cmdform").addEventListener("submit", async ev => {
  ev.preventDefault();
  const line = document.getElementById("cmd").value;
  const out = document.getElementById("out");
  out.textContent = "…";
  let r;
  try {
    r = await fetch("/api/command", {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: JSON.stringify({line})});
  } catch (err) {
    out.textContent = `E: the request failed (${err.message}); it may or may not have run`;
    out.dataset.done = String(Date.now());
    return;
  }
  if (!r.ok) { out.textContent = await r.text(); out.dataset.done = String(Date.now()); return; }
  const res = await r.json();
  out.textContent = [res.output, ...res.errors].filter(Boolean).join("\n");
  out.dataset.done = String(Date.now());
});

async function files() {
  const r = await get("/files/");
  const ul = document.getElementById("files");
  ul.replaceChildren();
  for (const f of r.ok ? await r.json() : []) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `/files/${f.path.split("/").map(encodeURIComponent).join("/")}`;
    a.textContent = `${f.path} (${f.size} bytes)`;
    a.download = "";
    li.append(a);
    ul.append(li);
  }
}

list.addEventListener("scroll", draw);
nsfilter.addEventListener("change", refilter);
textfilter.addEventListener("input", refilter);
setInterval(draw, SHOT_EVERY);
connect();
files();
