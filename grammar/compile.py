"""Compiles dockerfile.lark with Lark into the tables that grammar/runtime.py executes.

Lark stays the grammar compiler and the reference: it computes the LALR(1)
table, the terminal order of its contextual lexer and the shape of its trees,
and this module writes those facts down as JSON, so that a parse at run time
needs neither Lark nor its 70-100 ms import.  Run ``python -m grammar.compile``
after editing the grammar (``--check`` only reports whether the shipped tables
are stale); tests/grammar/test_runtime.py fails until someone does.

What Lark keeps where (lark 1.3):

- the table: ``LALR_Analyzer.parse_table`` (an ``IntParseTable``), reached as
  ``Lark.parser.parser._parse_table``; each action is ``(Shift, state)`` or
  ``(Reduce, Rule)``, and nonterminal gotos are Shift entries of the same dict;
- the lexer order: ``BasicLexer`` sorts its terminals by priority, then
  widest possible match, then pattern length, then name, and tries them in that
  order as one alternation; a string terminal that a same-priority regexp
  terminal matches whole is folded into that regexp ("unless" callbacks);
- the tree shape: ``ParseTreeBuilder`` drops filtered-out terminals (anonymous
  strings and ``_NAMES``) unless the rule keeps all tokens, splices the
  children of ``_rules`` into their parent, replaces a one-child ``?rule`` by
  that child and names the tree after the ``-> alias`` when there is one.

The JSON holds: ``start`` with ``start_states`` and ``end_states`` (where a
parse begins and where reaching it at the end of the text accepts);
``terminals`` in the order Lark's lexer tries them (kind, pattern, flags,
priority and, for regexps, the string terminals they swallow); ``rules``
(origin, expansion, size, tree name, inline / expand_single_child, and the
kept children as [index, splice]); ``states`` (``shift`` terminal -> state,
``reduce`` terminal -> rule index, ``goto`` rule -> state); ``ignore``,
``g_regex_flags``, the ``format`` tag and the ``grammar_digest`` it came from.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import deque
from pathlib import Path
from typing import Any

from lark import Lark
from lark.grammar import NonTerminal, Rule, Terminal
from lark.lexer import PatternStr, TerminalDef
from lark.load_grammar import load_grammar
from lark.parsers.lalr_analysis import Reduce

from grammar import GRAMMAR_PATH, TABLES_PATH, _read_grammar_text
from grammar.runtime import TABLES_FORMAT, grammar_digest, terminal_regexp

__all__ = ["compile_tables", "find_start_symbols", "main", "render_tables"]


def find_start_symbols(grammar_text: str) -> list[str]:
    """Return the grammar's entry points: the visible rules no other rule uses.

    The grammar has no start declaration of its own (its header comment names
    ``instruction`` and ``exec_form``); deriving the list keeps this module from
    going stale when an entry point is added.  ``_rules`` are left out: they
    are spliced into a parent and have no tree of their own to return.
    """
    grammar, _used_files = load_grammar(  # type: ignore[no-untyped-call]
        grammar_text, "<grammar>", [], False
    )
    names = [name for name, params, _tree, _options in grammar.rule_defs if not params]
    _terminals, rules, _ignore = grammar.compile(names, set())
    used = {
        symbol.name
        for rule in rules
        for symbol in rule.expansion
        if not symbol.is_term and symbol != rule.origin
    }
    return sorted(name for name in names if name not in used and not name.startswith("_"))


def compile_tables(grammar_text: str) -> dict[str, Any]:
    """Compute the parse tables of ``grammar_text`` as a JSON-ready dict.

    The result depends only on the grammar text (and Lark's algorithms): Lark
    numbers its states in set-iteration order, which changes from one process
    to the next, so states are renumbered breadth-first from the start states
    and rules are sorted, making the JSON byte-for-byte reproducible.
    """
    start = find_start_symbols(grammar_text)
    parser = Lark(grammar_text, parser="lalr", lexer="contextual", start=start)
    table = parser.parser.parser._parse_table
    lexer_terminals: list[TerminalDef] = list(parser.parser.lexer.root_lexer.terminals)
    terminal_names = {terminal.name for terminal in lexer_terminals} | {"$END"}

    _check_supported(parser.rules, start)
    state_ids = _number_states(table.states, [table.start_states[name] for name in start])
    rules = sorted(
        {
            arg
            for actions in table.states.values()
            for action, arg in actions.values()
            if action is Reduce
        },
        key=lambda rule: (rule.origin.name, [symbol.name for symbol in rule.expansion]),
    )
    rule_ids = {rule: index for index, rule in enumerate(rules)}

    states: list[dict[str, dict[str, int]]] = [{} for _ in state_ids]
    for old_id, actions in table.states.items():
        shift: dict[str, int] = {}
        reduce: dict[str, int] = {}
        goto: dict[str, int] = {}
        for symbol, (action, arg) in actions.items():
            if action is Reduce:
                reduce[symbol] = rule_ids[arg]
            elif symbol in terminal_names:
                shift[symbol] = state_ids[arg]
            else:
                goto[symbol] = state_ids[arg]
        states[state_ids[old_id]] = {"shift": shift, "reduce": reduce, "goto": goto}

    g_regex_flags: int = parser.options.g_regex_flags
    return {
        "format": TABLES_FORMAT,
        "grammar_digest": grammar_digest(grammar_text),
        "start": start,
        "start_states": {name: state_ids[table.start_states[name]] for name in start},
        "end_states": {name: state_ids[table.end_states[name]] for name in start},
        "g_regex_flags": g_regex_flags,
        "ignore": sorted(parser.ignore_tokens),
        "terminals": [
            _describe_terminal(t, lexer_terminals, g_regex_flags) for t in lexer_terminals
        ],
        "rules": [_describe_rule(rule) for rule in rules],
        "states": states,
    }


def render_tables(tables: dict[str, Any]) -> str:
    """Serialize tables the one way the shipped file is written.

    Keys are sorted and each terminal, rule and state sits on a line of its
    own: a grammar edit then shows as a readable diff rather than a reflowed
    blob or thousands of one-number lines.
    """
    fields = []
    for key in sorted(tables):
        value = tables[key]
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            items = ",\n".join("  " + json.dumps(item, sort_keys=True) for item in value)
            fields.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            fields.append(f" {json.dumps(key)}: {json.dumps(value, sort_keys=True)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def _check_supported(rules: list[Rule], start: list[str]) -> None:
    """Refuse grammar features whose trees the runtime's Tree type cannot hold."""
    for rule in rules:
        if any(rule.options.empty_indices):
            raise ValueError(
                f"rule {rule.origin.name}: [optional] items put None placeholders in the tree;"
                " write (item)? instead"
            )
        if rule.origin.name in start and rule.options.expand1:
            raise ValueError(
                f"start rule {rule.origin.name} uses ?: its parse could be a bare token"
            )


def _number_states(
    states: dict[int, dict[str, tuple[Any, Any]]], roots: list[int]
) -> dict[int, int]:
    """Number states breadth-first from ``roots``, following symbols in name order."""
    ids: dict[int, int] = {}
    queue = deque(roots)
    for root in roots:
        ids.setdefault(root, len(ids))
    while queue:
        state = queue.popleft()
        for symbol in sorted(states[state]):
            action, arg = states[state][symbol]
            if action is not Reduce and arg not in ids:
                ids[arg] = len(ids)
                queue.append(arg)
    if len(ids) != len(states):
        raise ValueError(
            f"{len(states) - len(ids)} parser states are unreachable from the start states"
        )
    return ids


def _describe_terminal(
    terminal: TerminalDef, lexer_terminals: list[TerminalDef], g_regex_flags: int
) -> dict[str, Any]:
    """Describe one terminal; the list it goes in is already in Lark's lexer order."""
    pattern = terminal.pattern
    is_string = isinstance(pattern, PatternStr)
    description: dict[str, Any] = {
        "name": terminal.name,
        "kind": "string" if is_string else "regexp",
        "pattern": pattern.value,
        "flags": sorted(pattern.flags),
        "priority": terminal.priority,
    }
    if not is_string:
        # Lark's _create_unless: a string terminal of the same priority that
        # this regexp matches in full is lexed as this regexp, then renamed.
        # "embed" says whether it also leaves the alternation (its flags are a
        # subset of ours); the runtime applies this per lexer state, as Lark does.
        regexp = terminal_regexp("regexp", pattern.value, sorted(pattern.flags))
        unless = []
        for other in lexer_terminals:
            literal = other.pattern.value
            if not isinstance(other.pattern, PatternStr) or other.priority != terminal.priority:
                continue
            match = re.match(regexp, literal, g_regex_flags)
            if match is not None and match.group(0) == literal:
                unless.append(
                    [other.name, frozenset(other.pattern.flags) <= frozenset(pattern.flags)]
                )
        description["unless"] = unless
    return description


def _describe_rule(rule: Rule) -> dict[str, Any]:
    """Describe how a reduction by ``rule`` shapes the tree, after ParseTreeBuilder."""
    options = rule.options
    keep_all_tokens = bool(options.keep_all_tokens)
    children = [
        [index, not symbol.is_term and symbol.name.startswith("_")]
        for index, symbol in enumerate(rule.expansion)
        if keep_all_tokens or not (isinstance(symbol, Terminal) and symbol.filter_out)
    ]
    origin: NonTerminal = rule.origin
    return {
        "origin": str(origin.name),
        "expansion": [str(symbol.name) for symbol in rule.expansion],
        "size": len(rule.expansion),
        "name": str(rule.alias or options.template_source or origin.name),
        "inline": str(origin.name).startswith("_"),
        "expand_single_child": bool(options.expand1 and not rule.alias),
        "children": children,
    }


def main(argv: list[str] | None = None) -> int:
    """Write grammar/dockerfile.tables.json, or with --check report whether it is stale."""
    arguments = argparse.ArgumentParser(prog="python -m grammar.compile", description=main.__doc__)
    arguments.add_argument("--check", action="store_true", help="exit 1 if the tables are stale")
    options = arguments.parse_args(argv)
    rendered = render_tables(compile_tables(_read_grammar_text(GRAMMAR_PATH)))
    try:
        current = Path(TABLES_PATH).read_text(encoding="utf-8")
    except OSError:
        current = None
    if options.check:
        if current != rendered:
            print(f"{TABLES_PATH} is stale: run python -m grammar.compile", file=sys.stderr)
            return 1
        return 0
    if current != rendered:
        Path(TABLES_PATH).write_text(rendered, encoding="utf-8")
        print(f"wrote {TABLES_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
