"""Reading a scenario file, ``--set`` overrides, validation into :class:`Scenario`, and back.

A scenario is a YAML mapping (read by :func:`fedsim.scenario.reading.parse_yaml`: safe loading
only, no duplicate keys, no non-finite numbers, no alias bombs) validated strictly into
:class:`~fedsim.scenario.scenario.Scenario`. Every problem becomes a
:class:`~fedsim.errors.ScenarioError` naming the key path, the bad value and what is allowed;
the CLI turns it into exit code 2.
"""

from __future__ import annotations

import copy
import os
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fedsim.errors import ScenarioError
from fedsim.scenario.reading import parse_yaml
from fedsim.scenario.scenario import Scenario, check_consistency
from fedsim.scenario.sweep_grammar import point_values, sweep_axes

__all__ = [
    "APP_DIR",
    "MAX_SCENARIO_BYTES",
    "apply_overrides",
    "load_scenario",
    "parse_scenario",
    "read_raw",
    "scenario_path",
    "scenario_to_dict",
    "set_dotted",
]

MAX_SCENARIO_BYTES = 1_000_000


def load_scenario(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate a scenario file.

    Parameters
    ----------
    path : path-like
        A YAML file holding one mapping.
    overrides : list of str, optional
        ``key.path=value`` strings (values parsed as YAML), applied before validation.

    Raises
    ------
    ScenarioError
        The file cannot be read or parsed, or a value is invalid.
    """
    return parse_scenario(apply_overrides(read_raw(path), overrides or []))


APP_DIR = Path(__file__).resolve().parents[2]
"""The directory holding ``fedsim/`` (a checkout, or the app ``flwr run`` installed)."""


def scenario_path(path: str | os.PathLike[str]) -> Path:
    """Where a run config's ``scenario`` path points.

    Under ``flwr run`` the ServerApp and ClientApps run in processes started by the
    SuperLink, from its working directory, not the user's: a relative path is taken from
    the working directory if the file is there, else from :data:`APP_DIR` (the app's own
    copy, which holds ``scenarios/``).
    """
    path = Path(path).expanduser()
    if path.is_absolute() or path.is_file():
        return path
    return APP_DIR / path


def read_raw(path: str | os.PathLike[str]) -> Any:
    """Read a scenario file into plain data (size-checked, :func:`parse_yaml`), unvalidated."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError("", str(path), "no such scenario file")
    size = path.stat().st_size
    if size > MAX_SCENARIO_BYTES:
        raise ScenarioError(
            "", f"{size} bytes", f"a scenario file is at most {MAX_SCENARIO_BYTES} bytes"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError("", str(path), f"a readable UTF-8 text file ({e})") from None
    return parse_yaml(text)


def apply_overrides(raw: Any, overrides: list[str]) -> Any:
    """Return a copy of ``raw`` with each ``key.path=value`` override set.

    Values are parsed as YAML (``rounds=5`` is an int, ``attack.params.z=1.5`` a float,
    ``sweep.seed=[0,1]`` a list), with the file's rules (no duplicate keys, no non-finite
    numbers). Missing intermediate mappings are created.

    Raises
    ------
    ScenarioError
        An item is not ``key=value``, its value is not valid YAML, or two items set the
        same key (the message names both).
    """
    if not overrides:
        return raw
    if not isinstance(raw, dict):
        return raw  # parse_scenario reports the real problem
    result = copy.deepcopy(raw)
    given: dict[str, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part.strip() for part in key.split(".")):
            raise ScenarioError("--set", item, "a key.path=value pair")
        if key in given:
            raise ScenarioError(
                key,
                None,
                "give each key once",
                problem=f"set twice (--set {given[key]} and --set {item})",
            )
        given[key] = item
        try:
            value = parse_yaml(text, f"--set {item}") if text.strip() else None
        except ScenarioError as e:
            path = f"{key}.{e.path}" if e.path else key
            raise ScenarioError(path, e.value, e.allowed, problem=e.problem) from None
        set_dotted(result, key, value)
    return result


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for ``key = "a.b.c"``, creating missing mappings."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ScenarioError(".".join(parts[: i + 1]), child, "a mapping, to set keys inside it")
        node = child
    node[parts[-1]] = value


def parse_scenario(raw: Any) -> Scenario:
    """Validate a raw mapping (already parsed from YAML) into a :class:`Scenario`."""
    if raw is None:
        raise ScenarioError(
            "", None, "the scenario is empty; a mapping with at least 'name' and 'rounds'"
        )
    if not isinstance(raw, dict):
        raise ScenarioError(
            "", raw, "a scenario is a YAML mapping (key: value), not a list or scalar"
        )
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as e:
        raise _to_scenario_error(e, raw) from None
    check_consistency(scenario)
    if scenario.sweep is not None:
        _check_sweep_points(scenario)
    return scenario


def _to_scenario_error(error: ValidationError, raw: dict[str, Any]) -> ScenarioError:
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"]]
    path = ".".join(loc)
    message = first["msg"]
    if first["type"] == "missing":
        return ScenarioError(path, None, "this key is required")
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return ScenarioError(path, first["input"], f"unknown key; allowed keys here: {allowed}")
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
        return ScenarioError(path, _lookup(raw, loc), message)
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return ScenarioError(path, first.get("input"), f"expected: {message.lower()}{suffix}")


def _allowed_keys(loc: list[str]) -> str:
    model: type[BaseModel] = Scenario
    for part in loc:
        annotation = model.model_fields[part].annotation
        blocks = [
            a
            for a in (annotation, *typing.get_args(annotation))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not blocks:
            return "(any)"
        model = blocks[0]
    return ", ".join(model.model_fields)


def _lookup(raw: Any, loc: list[str]) -> Any:
    node = raw
    for part in loc:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return node
    return node


def _check_sweep_points(s: Scenario) -> None:
    """Every point of the sweep must be a valid scenario too (the grammar: fedsim.run.sweep)."""
    base = s.model_dump(exclude_unset=True, exclude={"sweep"})  # what the file said
    for values in point_values(sweep_axes(s.sweep)):
        raw = copy.deepcopy(base)
        for key, value in values.items():
            set_dotted(raw, key, copy.deepcopy(value))
        try:
            parse_scenario(raw)
        except ScenarioError as e:
            raise ScenarioError(e.path, e.value, f"{e.allowed} (sweep point {values})") from None


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario as plain data (for ``scenario.yaml`` in a run directory)."""
    return scenario.model_dump(mode="json")
