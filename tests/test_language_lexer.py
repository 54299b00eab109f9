"""The lexer splits input exactly as minicli does."""

from __future__ import annotations

import pytest

from megabus.handlers.language import LanguageError
from megabus.handlers.language.lexer import Item, go_quote, join_items, lex, trim_space


def values(line: str) -> list[str]:
    return [item.value for item in lex(line)]


def test_whitespace_separates_words() -> None:
    assert values("vm   launch\tkvm  foo[0-2] ") == ["vm", "launch", "kvm", "foo[0-2]"]


def test_double_and_single_quotes_group_words() -> None:
    assert lex("echo \"a b\" 'c  d'") == [Item("echo"), Item("a b", '"'), Item("c  d", "'")]


def test_empty_quoted_string_is_a_word() -> None:
    assert values('.env foo ""') == [".env", "foo", ""]
    assert values("a '' b") == ["a", "", "b"]


def test_quote_in_the_middle_of_a_word_joins_it() -> None:
    assert values('a"b c"d e') == ["ab cd", "e"]


def test_other_quote_inside_quotes_is_literal() -> None:
    assert values('"it\'s" \'say "hi"\'') == ["it's", 'say "hi"']


@pytest.mark.parametrize(
    ("line", "word"),
    [
        (r"a\rb", "a\rb"),
        (r"a\nb", "a\nb"),
        (r"a\tb", "a\tb"),
        (r"a\\b", "a\\b"),
        (r"a\"b", 'a"b'),
        (r"a\'b", "a'b"),
        (r"a\#b", "a#b"),
        (r'"x\ty"', "x\ty"),
        (r'"x\"y"', 'x"y'),
    ],
)
def test_escapes(line: str, word: str) -> None:
    assert values(line) == [word]


def test_unknown_escape_is_an_error() -> None:
    with pytest.raises(LanguageError, match=r"^unexpected escaped character: q$"):
        lex(r"echo \q")
    with pytest.raises(LanguageError, match=r"^unexpected escaped character: x$"):
        lex(r'echo "\x"')


def test_backslash_at_end_is_an_error() -> None:
    with pytest.raises(LanguageError, match=r"^expected escape character$"):
        lex("echo \\")


def test_unterminated_quotes() -> None:
    with pytest.raises(LanguageError, match=r'^missing terminal "$'):
        lex('echo "abc')
    with pytest.raises(LanguageError, match=r"^missing terminal '$"):
        lex("echo 'abc")


def test_comment_ends_the_input() -> None:
    assert values("vm config net A # should be 102") == ["vm", "config", "net", "A"]
    # minicli stops at any unquoted '#', even inside a word
    assert values("foo#bar baz") == ["foo"]
    assert lex("# a whole-line comment") == []
    assert lex("   #indented") == []


def test_quoted_or_escaped_hash_is_not_a_comment() -> None:
    assert values('echo "#1" \\#2') == ["echo", "#1", "#2"]


def test_empty_line() -> None:
    assert lex("") == []
    assert lex("   \t ") == []


def test_join_requotes_words_with_whitespace_like_go() -> None:
    assert join_items(lex('echo "a b" c')) == 'echo "a b" c'
    assert join_items([Item("x"), Item('say "hi" now')]) == 'x "say \\"hi\\" now"'
    assert go_quote("a\tb") == '"a\\tb"'


def test_trim_space_uses_go_whitespace() -> None:
    assert trim_space(" \t\n x y \r\n") == "x y"
    # Go does not count the ASCII information separators as space
    assert trim_space("\x1cx\x1c") == "\x1cx\x1c"
