"""Reading scenario YAML as plain data that means exactly what it says.

``yaml.safe_load`` alone accepts things a scenario must not contain: a key given twice (the
last silently wins), keys that are not strings (``yes:`` is read as ``True``), aliases that
expand a few lines into millions of values, recursive aliases, nesting deep enough to exhaust
Python's stack, and non-finite numbers (``.nan``, ``.inf``). :func:`parse_yaml` composes the
YAML node graph first, checks it (each problem a :class:`~fedsim.errors.ScenarioError` naming
the key path and line numbers), and only then builds the data with PyYAML's safe constructor;
the data is then checked for non-finite floats and integers outside ±2**63.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from fedsim.errors import ScenarioError

__all__ = ["MAX_DEPTH", "MAX_VALUES", "check_plain_data", "parse_yaml"]

MAX_DEPTH = 50
"""Deepest nesting of mappings and lists a scenario may have."""

MAX_VALUES = 100_000
"""Most values (scalars, mappings, lists, with aliases expanded) a scenario may hold."""

MAX_INT = 2**63
"""Integers must lie strictly inside ±MAX_INT."""

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def parse_yaml(text: str, source: str = "<file>") -> Any:
    r"""Parse one YAML document into plain data, refusing what a scenario must not contain.

    Parameters
    ----------
    text : str
        The YAML text.
    source : str
        What the text is, for messages (``"<file>"``, or ``"--set rounds=3"``).

    Raises
    ------
    ScenarioError
        Invalid YAML (with line and column), a duplicate key (both line numbers), a key that
        is not a string, a recursive or exploding alias, nesting deeper than
        :data:`MAX_DEPTH`, a non-finite number or an integer outside ±2**63.

    Examples
    --------
    >>> parse_yaml("rounds: 3\nclients: {lr: 0.1}")
    {'rounds': 3, 'clients': {'lr': 0.1}}
    >>> parse_yaml("rounds: 3\nrounds: 4")
    Traceback (most recent call last):
    ...
    fedsim.errors.ScenarioError: rounds: duplicate key (lines 1 and 2); give each key once
    """
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _NodeCheck().walk(node, "", 0)
        data = loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScenarioError("", source, f"invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ScenarioError(
            "", source, f"YAML nested at most {MAX_DEPTH} levels deep (this is far deeper)"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    check_plain_data(data)
    return data


class _NodeCheck:
    """One walk over a composed node graph (aliases followed, and counted, each time)."""

    def __init__(self) -> None:
        self.values = 0
        self.ancestors: set[int] = set()

    def walk(self, node: yaml.Node, path: str, depth: int) -> None:
        self.values += 1
        if self.values > MAX_VALUES:
            raise ScenarioError(
                path,
                None,
                f"a scenario of at most {MAX_VALUES} values (YAML aliases expand to more)",
                problem=f"too many values (line {node.start_mark.line + 1})",
            )
        if depth > MAX_DEPTH:
            raise ScenarioError(
                path,
                None,
                f"YAML nested at most {MAX_DEPTH} levels deep",
                problem=f"nested too deeply (line {node.start_mark.line + 1})",
            )
        if isinstance(node, yaml.ScalarNode):
            _check_number_form(node, path)
            return
        if id(node) in self.ancestors:
            raise ScenarioError(
                path,
                None,
                "an alias may not refer to a value that contains it",
                problem=f"recursive YAML alias (line {node.start_mark.line + 1})",
            )
        self.ancestors.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, _join(path, str(index)), depth + 1)
        elif isinstance(node, yaml.MappingNode):
            self._mapping(node, path, depth)
        self.ancestors.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: str, depth: int) -> None:
        seen: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.tag == _MERGE_TAG:  # `<<: *base` merges keys; explicit keys override them
                self.walk(value, path, depth + 1)
                continue
            if not isinstance(key, yaml.ScalarNode) or key.tag != _STR_TAG:
                where = _join(path, key.value) if isinstance(key, yaml.ScalarNode) else path
                raise ScenarioError(
                    where,
                    None,
                    "keys are strings (YAML reads yes/no/on/off/null and numbers as other "
                    "types: quote such a key)",
                    problem=f"a key that is not a string (line {line})",
                )
            name = key.value
            if name in seen:
                raise ScenarioError(
                    _join(path, name),
                    None,
                    "give each key once",
                    problem=f"duplicate key (lines {seen[name]} and {line})",
                )
            seen[name] = line
            self.walk(value, _join(path, name), depth + 1)


_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_LEGACY_OCTAL = re.compile(r"[-+]?0[0-7_]+")


def _check_number_form(node: yaml.ScalarNode, path: str) -> None:
    """Refuse YAML 1.1 number forms that read as a different number than they look.

    ``1:30`` is 90 (base 60) and ``010`` is 8 (octal) to PyYAML; ``0o10``, ``0x10`` and
    ``1_000`` say what they mean and stay allowed.
    """
    if node.tag not in (_INT_TAG, _FLOAT_TAG) or node.style is not None:
        return
    text = node.value
    if ":" in text:
        reason = "a base-60 number to YAML"
    elif node.tag == _INT_TAG and _LEGACY_OCTAL.fullmatch(text):
        reason = "an octal number to YAML"
    else:
        return
    raise ScenarioError(
        path,
        text,
        f"{reason} (write the number plainly, or quote it if it is a string)",
        problem=f"got {text} (line {node.start_mark.line + 1})",
    )


def check_plain_data(data: Any, path: str = "") -> None:
    """Refuse non-finite floats and integers outside ±2**63 anywhere in ``data``.

    Raises
    ------
    ScenarioError
        Naming the key path of the first such number.
    """
    if isinstance(data, bool):
        return
    if isinstance(data, float) and not math.isfinite(data):
        raise ScenarioError(path, data, "a finite number (no .nan or .inf in a scenario)")
    if isinstance(data, int) and not -MAX_INT < data < MAX_INT:
        raise ScenarioError(path, data, "an integer within ±2**63")
    if isinstance(data, dict):
        for key, value in data.items():
            check_plain_data(value, _join(path, str(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            check_plain_data(value, _join(path, str(index)))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
