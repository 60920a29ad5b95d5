"""Runs the LALR(1) tables that grammar/compile.py computed with Lark, without Lark.

Importing Lark costs more than the whole budget of ``pybuild parse``, so Lark
only compiles the grammar; this module (stdlib only) executes the result and
must build the very tree ``Lark.parse`` would, token for token.  Three pieces
mirror Lark's: a contextual lexer (per parser state, only the terminals that
state accepts, tried as one alternation in Lark's order), the shift/reduce loop
of ``ParserState.feed_token``, and the tree shaping of ``ParseTreeBuilder``
(filtered tokens, spliced ``_rules``, collapsed ``?rules``, aliases).

Everything here is iterative: an exec form nested 100,000 brackets deep costs
stack-list memory, not Python frames, and any text either parses or raises
GrammarSyntaxError.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# typing is imported for the type checker only: it costs start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "END",
    "TABLES_FORMAT",
    "GrammarSyntaxError",
    "TableParser",
    "Token",
    "Tree",
    "grammar_digest",
    "terminal_regexp",
]

# Bump when the JSON layout changes, so old tables are recompiled, not misread.
TABLES_FORMAT = "pybuild.lalr-tables.v1"
# Lark's name for the end of the text; it never comes out of the lexer.
END = "$END"


def grammar_digest(grammar_text: str) -> str:
    """The digest that ties a tables file to the grammar text it was compiled from.

    xxh3-128, not sha256: it is an internal key checked at every start, and
    importing hashlib (OpenSSL) costs more start-up time than xxhash does.
    """
    import xxhash

    return "xxh3-128:" + xxhash.xxh3_128_hexdigest(grammar_text.encode("utf-8"))


def terminal_regexp(kind: str, pattern: str, flags: Iterable[str]) -> str:
    """The regexp of a terminal, built as Lark's ``Pattern.to_regexp`` builds it.

    Lark wraps flags in a set's iteration order; sorting gives the same
    meaning (scoped flags nest) and a reproducible string.
    """
    regexp = re.escape(pattern) if kind == "string" else pattern
    for flag in sorted(flags):
        regexp = f"(?{flag}:{regexp})"
    return regexp


@dataclass(frozen=True, slots=True)
class Token:
    """A terminal as matched: its name, its text and its offsets in the parsed text."""

    type: str
    value: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Tree:
    """A rule as Lark shapes it: filtered-out tokens dropped, ``_rules`` spliced in."""

    rule: str
    children: tuple[Tree | Token, ...]


class GrammarSyntaxError(Exception):
    """The text does not fit the grammar.

    ``position`` is the offset in ``text`` where parsing stopped (``len(text)``
    when the text ended too soon); ``expected`` names the terminals the parser
    could have taken there, ``"$END"`` standing for the end of the text;
    ``found`` is the terminal that was lexed there but did not fit, or None
    when no acceptable terminal matched or the text had ended.
    """

    def __init__(
        self, text: str, position: int, expected: frozenset[str], found: str | None = None
    ) -> None:
        self.text = text
        self.position = position
        self.expected = expected
        self.found = found
        if position >= len(text):
            what = "end of text"
        else:
            snippet = text[position : position + 20]
            what = f"{found} {snippet!r}" if found else f"character {text[position]!r}"
        super().__init__(
            f"unexpected {what} at offset {position}; expected {', '.join(sorted(expected))}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickles as cls(*args); args holds only the message here.
        return (type(self), (self.text, self.position, self.expected, self.found))


# The records below are plain tuples and a slotted class, not dataclasses:
# they live in the hot loop (tuple unpacking is the cheapest access there is)
# and each dataclass definition adds over a millisecond to import time, which
# every `pybuild` process pays.

# A rule, as one tuple: (origin, size, name, mode, keep).
#   mode: _TREE builds Tree(name, kept); _INLINE (a _rule) hands the parent the
#   list of kept children to splice in; _EXPAND1 (a ?rule) lets a single kept
#   child stand for the rule.  keep: ((index, splice), ...) of the children
#   that stay, or None when all stay as they are.
_Rule = tuple[str, int, str, int, "tuple[tuple[int, bool], ...] | None"]
_TREE, _INLINE, _EXPAND1 = 0, 1, 2

# A state lexer, as one tuple: (match, rename).  match is the bound match of
# the alternation of the state's terminals, in Lark's order; rename maps a
# regexp terminal that swallows string terminals to the fullmatch that names
# the string terminal its token spells (Lark's UnlessCallback), or is None.
_StateLexer = tuple[
    "Callable[[str, int], re.Match[str] | None]",
    "dict[str, Callable[[str], re.Match[str] | None]] | None",
]


class _Terminal:
    """A terminal as the lexer builder needs it."""

    __slots__ = ("kind", "name", "regexp", "unless")

    def __init__(self, name: str, kind: str, regexp: str, unless: dict[str, bool]) -> None:
        self.name = name
        self.kind = kind  # "string" or "regexp"
        self.regexp = regexp
        # String terminals this regexp matches whole -> whether they also
        # leave the alternation (see compile._describe_terminal).
        self.unless = unless


def _never_matches(text: str, position: int) -> re.Match[str] | None:
    """The lexer of a state that takes no terminal, only the end of the text."""
    return None


class TableParser:
    """Parses text with tables from compile_tables, as Lark's LALR frontend would.

    Immutable once built, apart from the per-state lexers it compiles the first
    time a state needs one; a parser is safe to share between parses.
    """

    __slots__ = (
        "_actions",
        "_end_states",
        "_ignore",
        "_kept_terminals",
        "_lexers",
        "_lexers_by_terminals",
        "_regex_flags",
        "_rules",
        "_start_states",
        "_state_terminals",
        "_terminals",
        "start_symbols",
    )

    def __init__(
        self,
        *,
        start_states: dict[str, int],
        end_states: dict[str, int],
        actions: list[dict[str, int]],
        rules: list[_Rule],
        state_terminals: list[frozenset[str]],
        terminals: list[_Terminal],
        kept_terminals: frozenset[str],
        ignore: frozenset[str],
        regex_flags: int,
    ) -> None:
        self.start_symbols = tuple(start_states)
        self._start_states = start_states
        self._end_states = end_states
        # One dict per state: terminal -> shift target (>= 0) or ~rule (< 0),
        # nonterminal -> goto target.  Terminal and rule names never collide.
        self._actions = actions
        self._rules = rules
        self._state_terminals = state_terminals  # what each state can take, "$END" included
        self._terminals = terminals  # in Lark's lexer order
        # Terminals some rule keeps in its tree; the others ("[", _GAP...) are
        # lexed and shifted but never become Token objects.
        self._kept_terminals = kept_terminals
        self._ignore = ignore
        self._regex_flags = regex_flags
        self._lexers: list[_StateLexer | None] = [None] * len(actions)
        self._lexers_by_terminals: dict[frozenset[str], _StateLexer] = {}

    @classmethod
    def from_tables(cls, tables: dict[str, Any]) -> TableParser:
        """Build a parser from the dict that compile_tables returns (or its JSON)."""
        if tables.get("format") != TABLES_FORMAT:
            raise ValueError(
                f"tables are in format {tables.get('format')!r}, not {TABLES_FORMAT!r}"
            )
        actions: list[dict[str, int]] = []
        state_terminals: list[frozenset[str]] = []
        for state in tables["states"]:
            merged = dict(state["shift"])
            merged.update((terminal, ~rule) for terminal, rule in state["reduce"].items())
            merged.update(state["goto"])
            actions.append(merged)
            state_terminals.append(frozenset(state["shift"]) | frozenset(state["reduce"]))
        terminal_names = {terminal["name"] for terminal in tables["terminals"]}
        rules: list[_Rule] = []
        kept_terminals: set[str] = set()
        for rule in tables["rules"]:
            if rule["inline"]:
                mode = _INLINE
            elif rule["expand_single_child"]:
                mode = _EXPAND1
            else:
                mode = _TREE
            if rule["origin"] in tables["start_states"] and mode != _TREE:
                raise ValueError(f"start rule {rule['origin']} would not always yield a Tree")
            keep = tuple((int(index), bool(splice)) for index, splice in rule["children"])
            kept_terminals.update(
                rule["expansion"][index]
                for index, _splice in keep
                if rule["expansion"][index] in terminal_names
            )
            is_identity = len(keep) == rule["size"] and not any(splice for _index, splice in keep)
            rules.append(
                (rule["origin"], rule["size"], rule["name"], mode, None if is_identity else keep)
            )
        terminals = [
            _Terminal(
                terminal["name"],
                terminal["kind"],
                terminal_regexp(terminal["kind"], terminal["pattern"], terminal["flags"]),
                {name: embed for name, embed in terminal.get("unless", ())},
            )
            for terminal in tables["terminals"]
        ]
        return cls(
            start_states=dict(tables["start_states"]),
            end_states=dict(tables["end_states"]),
            actions=actions,
            rules=rules,
            state_terminals=state_terminals,
            terminals=terminals,
            kept_terminals=frozenset(kept_terminals),
            ignore=frozenset(tables["ignore"]),
            regex_flags=tables["g_regex_flags"],
        )

    def parse(self, text: str, start: str) -> Tree:
        """Parse all of ``text`` from the rule ``start``.

        Returns the tree Lark would; raises GrammarSyntaxError, and nothing
        else, when the text does not fit (ValueError only for an unknown start).
        """
        try:
            state = self._start_states[start]
            end_state = self._end_states[start]
        except KeyError:
            raise ValueError(
                f"no start symbol {start!r}; this grammar has {self.start_symbols}"
            ) from None
        # This loop is the hot path of every Dockerfile parse: locals only, and
        # the tree shaping of ParseTreeBuilder written out rather than called.
        actions = self._actions
        rules = self._rules
        lexers = self._lexers
        kept_terminals = self._kept_terminals
        ignore = self._ignore
        state_stack = [state]
        # Tokens (None for terminals no rule keeps), Trees, and lists of
        # children from _rules waiting to be spliced into their parent.
        value_stack: list[Any] = []
        position = 0
        length = len(text)
        token: Token | None = None
        while True:
            # Lex in the state reached by the last shift, before the reductions
            # the new token will trigger: that is the state Lark's lexer sees.
            if position < length:
                lexer = lexers[state] or self._lexer_for(state)
                match = lexer[0](text, position)
                if match is None:
                    raise self._error(text, position, state, None)
                kind = match.lastgroup or ""  # never None: each alternative is a named group
                end = match.end()
                if end == position:  # Lark refuses zero-width terminals; never loop on one
                    raise self._error(text, position, state, None)
                if kind in ignore:
                    position = end
                    continue
                if lexer[1] is not None and kind in lexer[1]:
                    renamed = lexer[1][kind](text[position:end])
                    if renamed is not None and renamed.lastgroup:
                        kind = renamed.lastgroup
                token_start = position
                token = (
                    Token(kind, text[position:end], position, end)
                    if kind in kept_terminals
                    else None
                )
                position = end
                at_end = False
            else:
                kind = END
                token_start = length
                token = None
                at_end = True
            while True:
                action = actions[state].get(kind)
                if action is None:
                    raise self._error(text, token_start, state, None if at_end else kind)
                if action >= 0:
                    if at_end:  # only a broken table could shift the end
                        raise self._error(text, token_start, state, None)
                    state = action
                    state_stack.append(state)
                    value_stack.append(token)
                    break
                origin, size, name, mode, keep = rules[~action]
                if size:
                    children = value_stack[-size:]
                    del value_stack[-size:]
                    del state_stack[-size:]
                else:
                    children = []
                if keep is not None:
                    # Lark's ChildFilterLALR: a spliced _rule list that comes
                    # first is extended in place (each list has one owner),
                    # so a long left-recursive list costs linear, not quadratic.
                    kept: list[Any] | None = None
                    for index, splice in keep:
                        if splice:
                            if kept is None:
                                kept = children[index]
                            else:
                                kept.extend(children[index])
                        elif kept is None:
                            kept = [children[index]]
                        else:
                            kept.append(children[index])
                    children = [] if kept is None else kept
                if mode == _TREE:
                    node: Any = Tree(name, tuple(children))
                elif mode == _INLINE:
                    node = children
                elif len(children) == 1:
                    node = children[0]
                else:
                    node = Tree(name, tuple(children))
                state = actions[state_stack[-1]][origin]
                state_stack.append(state)
                value_stack.append(node)
                if at_end and state == end_state:
                    # from_tables refused start rules that could yield a non-Tree.
                    assert isinstance(node, Tree)
                    return node

    def _lexer_for(self, state: int) -> _StateLexer:
        """Compile (once per set of terminals) the lexer for ``state``."""
        accepted = self._state_terminals[state] | self._ignore
        lexer = self._lexers_by_terminals.get(accepted)
        if lexer is None:
            lexer = self._build_lexer(accepted)
            self._lexers_by_terminals[accepted] = lexer
        self._lexers[state] = lexer
        return lexer

    def _build_lexer(self, accepted: frozenset[str]) -> _StateLexer:
        """Build the alternation Lark's BasicLexer would, for these terminals."""
        ordered = [terminal for terminal in self._terminals if terminal.name in accepted]
        embedded: set[str] = set()
        rename: dict[str, Callable[[str], re.Match[str] | None]] = {}
        for terminal in ordered:
            if not terminal.unless:
                continue
            swallowed = [
                other
                for other in ordered
                if other.kind == "string" and other.name in terminal.unless
            ]
            if swallowed:
                rename[terminal.name] = re.compile(
                    _alternation(swallowed), self._regex_flags
                ).fullmatch
                embedded.update(other.name for other in swallowed if terminal.unless[other.name])
        scanned = [terminal for terminal in ordered if terminal.name not in embedded]
        match: Callable[[str, int], re.Match[str] | None]
        if scanned:
            match = re.compile(_alternation(scanned), self._regex_flags).match
        else:
            match = _never_matches
        return (match, rename or None)

    def _error(self, text: str, position: int, state: int, found: str | None) -> GrammarSyntaxError:
        return GrammarSyntaxError(text, position, self._state_terminals[state], found)


def _alternation(terminals: list[_Terminal]) -> str:
    """One regexp trying ``terminals`` in order; ``lastgroup`` names the winner."""
    return "|".join(f"(?P<{terminal.name}>{terminal.regexp})" for terminal in terminals)
