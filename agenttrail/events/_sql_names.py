"""Check the state and guard-kind names spelled out in SQL against :mod:`._names`.

SQL cannot import a Python enum, so migrations, forensic queries and dashboards spell
``'succeeded'``, ``'limit_exceeded'`` … out. :func:`name_mismatches` finds every
comparison of a state column (``to_state``, ``from_state``, ``state``, ``outcome``) or of
``kind`` with string literals, and reports a literal that is not a member of
:class:`TaskState` / :class:`GuardKind`, and a list of terminal states that is neither
all of :data:`TERMINAL_STATES` nor all of its failing ones (a new terminal state added
to the enum but not to a query is exactly that).
"""

from __future__ import annotations

import re

from agenttrail.events._names import TERMINAL_STATES, GuardKind, TaskState

STATE_COLUMNS: tuple[str, ...] = ("to_state", "from_state", "state", "outcome")
"""Columns (and aliases) whose values are task states."""

KIND_COLUMNS: tuple[str, ...] = ("kind",)
"""Columns whose values are guard kinds."""

FAILING_STATES: frozenset[str] = TERMINAL_STATES - {TaskState.SUCCEEDED}
"""Terminal states that are not a success."""

_COMPARISON = re.compile(
    r"(?<!\w)(?P<col>"
    + "|".join((*STATE_COLUMNS, *KIND_COLUMNS))
    + r")\s*(?P<op>!=|<>|=|NOT\s+IN|IN)\s*(?P<rhs>\([^()]*\)|'[^']*')",
    re.IGNORECASE,
)
_LITERAL = re.compile(r"'([^']*)'")


def _comparisons(sql: str) -> list[tuple[str, list[str], int]]:
    out = []
    for m in _COMPARISON.finditer(sql):
        literals = _LITERAL.findall(m.group("rhs"))
        if literals:
            out.append((m.group("col").lower(), literals, sql.count("\n", 0, m.start()) + 1))
    return out


def name_mismatches(sql: str, where: str) -> list[str]:
    """Sentences naming each wrong state or guard-kind literal of ``sql`` (empty if none).

    Args:
        sql: the text to check (a migration, a query, a dashboard file).
        where: how to name it in the sentences (e.g. its path).
    """
    states = {str(s) for s in TaskState}
    kinds = {str(k) for k in GuardKind}
    problems: list[str] = []
    for column, literals, line in _comparisons(sql):
        known = kinds if column in KIND_COLUMNS else states
        enum = "GuardKind" if column in KIND_COLUMNS else "TaskState"
        for lit in literals:
            if lit not in known:
                problems.append(
                    f"{where}:{line}: {column} compared with {lit!r}, which is not a {enum} "
                    f"(agenttrail/events/_names.py); known: {', '.join(sorted(known))}"
                )
        terminal = set(literals) & TERMINAL_STATES
        complete = (set(TERMINAL_STATES), set(FAILING_STATES))
        if column in STATE_COLUMNS and len(terminal) >= 2 and terminal not in complete:
            wanted = FAILING_STATES if "succeeded" not in terminal else TERMINAL_STATES
            missing = sorted(str(s) for s in wanted - terminal)
            problems.append(
                f"{where}:{line}: {column} lists terminal states {sorted(terminal)} "
                f"but not {missing}; list all of TERMINAL_STATES (or all failing ones)"
            )
    return problems
