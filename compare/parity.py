"""ERP payload parity: do both flows send the ERP the same sales order?

Each flow's acknowledged submission is normalised before comparison:

- fields that are the flow's own (ids, timestamps, memos) are removed by
  `Normalisation.ignore_paths`, regular expressions searched in deepdiff
  paths such as ``root['item']['items'][0]['rate']``, the same syntax as
  deepdiff's ``exclude_regex_paths``;
- numbers, and strings that spell a plain decimal number, become `Decimal`,
  so that "19.90", 19.9 and 19.90 are one amount;
- lists are compared as multisets when `ignore_order` is set, so reordered
  lines match, but a line sent twice does not match a line sent once;
- `field_map` moves fields of the candidate's payload to where the legacy
  flow puts them, for a candidate that sends an equivalent order in
  another shape;
- with a `decimal_tolerance`, numbers that differ by less than it match;
- differences only in `noise_paths` (fields an A/A run showed to differ
  with no change at all) make the pair equal, flagged as noise.

A canonical SHA-256 of the normalised payload decides most pairs. It is
computed in one pass over the decoded payload, without building the
normalised copy, and each field path's ignore decision is tested once per
run and then looked up (`_PathNode`). deepdiff runs only when the digests
differ, to describe the difference or to find that there is none.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from json.encoder import encode_basestring_ascii
from typing import Any

from deepdiff import DeepDiff

__all__ = [
    "DEFAULT_IGNORE_PATHS",
    "Normalisation",
    "PayloadComparison",
    "compare_decoded",
    "compare_payloads",
    "field_pattern",
]

# Fields of a NetSuite sales order that each flow fills with its own value.
# These are the record's internal id and document number, dates, sync
# timestamps (any key ending in `_at`) and free-text memos. Ids are ignored
# only at the top level, because a line's `item.id` names the product.
DEFAULT_IGNORE_PATHS: tuple[str, ...] = (
    r"^root\['(id|internalId|tranId)'\]$",
    r"\['(tranDate|createdDate|lastModifiedDate)'\]",
    r"\['custbody_synced_at'\]",
    r"\['[^']*_at'\]",
    r"\['memo'\]",
)

# A plain decimal number without leading zeros: "007" stays a string
# because it is more likely a code than an amount.
_DECIMAL_STRING = re.compile(r"[+-]?(?:0|[1-9]\d*)(?:\.\d+)?")

# Lines of the deepdiff description kept in one example.
_DIFF_LINES = 3

# Field paths whose ignore decision is remembered per Normalisation. Beyond
# this many (payloads keyed by ever-new names), paths are tested each time.
_MAX_PATH_NODES = 100_000

# deepdiff 8 reports a dict that shares few keys with the other as one
# changed value. A threshold of 0 makes it report each member, so every
# difference carries the paths of the fields that differ.
_DEEPER = {"threshold_to_diff_deeper": 0}

# Numbers whose decimal exponent is within this are written without one.
_PLAIN_EXPONENT = 100

# A tolerance applies to numbers with at most this many more digits than it.
_MAX_TOLERANCE_STEPS_DIGITS = 60


def _exact_context(precision: int) -> Context:
    """Return a decimal context of `precision` digits and the widest exponent range."""
    return Context(prec=precision, Emax=MAX_EMAX, Emin=MIN_EMIN)

# Differences described by deepdiff remembered per Normalisation.
_MAX_CACHED_DIFFERENCES = 10_000

# Leaf values whose canonical text is remembered, keyed by type and value
# (True == 1, but their texts differ), and how many are remembered at most.
_CACHED_LEAVES = frozenset({int, float, str, Decimal})
_MAX_LEAVES = 100_000


class _PathNode:
    """One field path (with list indexes) seen in payloads, and whether it is ignored."""

    __slots__ = ("children", "ignored", "key_text", "path")

    def __init__(self, path: str, ignored: bool, key_text: str) -> None:
        self.path = path
        self.ignored = ignored
        # The key as canonical JSON text with its colon, used for dict members.
        self.key_text = key_text
        self.children: dict[Any, _PathNode] = {}


class _PathTree:
    """Memory of a Normalisation between payloads: field paths, leaf texts and differences."""

    __slots__ = ("differences", "leaves", "root", "size")

    def __init__(self) -> None:
        self.root = _PathNode("root", False, "")
        self.size = 1
        # Canonical texts of numbers and numeric strings, by (type, value).
        self.leaves: dict[tuple[type, Any], str] = {}
        # Comparisons of pruned payload pairs, by the pair's repr.
        self.differences: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class Normalisation:
    """Rules applied to both flows' ERP payloads before they are compared."""

    ignore_paths: tuple[str, ...] = DEFAULT_IGNORE_PATHS
    ignore_order: bool = True
    decimal_numbers: bool = True
    # Largest absolute difference between two numbers that still match, or
    # None for exact comparison. Needs decimal_numbers.
    decimal_tolerance: Decimal | None = None
    # (candidate path, legacy path) pairs in dotted form, such as
    # ("lines", "item.items") or ("item.items[].sku", "item.items[].item.externalId");
    # `[]` stands for every element of a list.
    field_map: tuple[tuple[str, str], ...] = ()
    # Regular expressions, like ignore_paths, for fields that differ as noise.
    noise_paths: tuple[str, ...] = ()
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _noise_patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _tree: _PathTree = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tree", _PathTree())
        object.__setattr__(self, "ignore_paths", _path_tuple("ignore_paths", self.ignore_paths))
        object.__setattr__(self, "noise_paths", _path_tuple("noise_paths", self.noise_paths))
        object.__setattr__(self, "_patterns", _compile_paths("ignore path", self.ignore_paths))
        object.__setattr__(self, "_noise_patterns", _compile_paths("noise path", self.noise_paths))
        object.__setattr__(self, "decimal_tolerance", _tolerance(self.decimal_tolerance))
        object.__setattr__(self, "field_map", _field_map(self.field_map))

    def apply(self, payload: Any) -> Any:
        """Return a normalised copy of a decoded JSON payload."""
        return self._normalise(payload, "root")

    def map_fields(self, payload: Any) -> Any:
        """Return a copy of a candidate payload with `field_map` applied."""
        for source, target in self.field_map:
            payload = _move_field(payload, source, target)
        return payload

    def is_noise(self, path: str) -> bool:
        """Tell whether a deepdiff path is one of the noise fields."""
        return any(pattern.search(path) for pattern in self._noise_patterns)

    def _normalise(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            members = {}
            for key, item in value.items():
                item_path = f"{path}[{key!r}]"
                if not self._ignored(item_path):
                    members[key] = self._normalise(item, item_path)
            return members

        if isinstance(value, list):
            items = []
            for index, item in enumerate(value):
                item_path = f"{path}[{index}]"
                if not self._ignored(item_path):
                    items.append(self._normalise(item, item_path))
            return items

        if self.decimal_numbers:
            return _to_decimal(value)
        return value

    def quantized(self, value: Any) -> Any:
        """Return a copy with every Decimal rounded to a multiple of the tolerance.

        Two payloads that are equal after this differ by less than the
        tolerance in every number. The converse does not hold, so unequal
        ones are checked number by number.
        """
        tolerance = self.decimal_tolerance
        if tolerance is None:
            return value
        if isinstance(value, dict):
            return {key: self.quantized(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.quantized(item) for item in value]
        if isinstance(value, Decimal) and value.is_finite():
            magnitude = value.adjusted() - tolerance.adjusted()
            if magnitude > _MAX_TOLERANCE_STEPS_DIGITS:
                # A number so much larger than the tolerance is compared exactly.
                return value
            # Enough precision for every whole step, however large the value.
            exact = _exact_context(max(28, magnitude + 10))
            steps = exact.divide(value, tolerance).quantize(Decimal(1), rounding=ROUND_HALF_EVEN,
                                                            context=exact)
            return exact.multiply(steps, tolerance)
        return value

    def _ignored(self, path: str) -> bool:
        return any(pattern.search(path) for pattern in self._patterns)

    def digest(self, normalised: Any) -> str:
        """Return the SHA-256 of a normalised payload's canonical form."""
        return hashlib.sha256(self._canonical(normalised).encode()).hexdigest()

    def payload_digest(self, payload: Any) -> str:
        """Return the digest of a decoded payload as normalised and quantized.

        Equal to `digest(quantized(apply(payload)))`, in one pass and
        without building the normalised copy.
        """
        return hashlib.sha256(self._canonical_raw(payload, self._tree.root).encode()).hexdigest()

    def _canonical_raw(self, value: Any, node: _PathNode) -> str:
        kind = type(value)
        if kind is dict:
            members = []
            children = node.children
            leaves = self._tree.leaves
            for key, item in value.items():
                child = children.get(key) or self._child(node, key, f"{node.path}[{key!r}]")
                if child.ignored:
                    continue
                # Leaves are looked up here rather than in a call of their own:
                # most members are leaves, and a call costs more than the lookup.
                text = leaves.get((type(item), item)) if type(item) in _CACHED_LEAVES else None
                members.append(child.key_text + (text or self._canonical_raw(item, child)))
            members.sort()
            return "{" + ",".join(members) + "}"
        if kind is list:
            items = []
            children = node.children
            for index, item in enumerate(value):
                child = children.get(index) or self._child(node, index, f"{node.path}[{index}]")
                if not child.ignored:
                    items.append(self._canonical_raw(item, child))
            if self.ignore_order:
                items.sort()
            return "[" + ",".join(items) + "]"
        if kind in _CACHED_LEAVES:
            # Amounts, quantities and codes repeat across orders, so leaf
            # texts are remembered.
            leaves = self._tree.leaves
            text = leaves.get((kind, value))
            if text is None:
                text = self._leaf_text(value)
                if len(leaves) < _MAX_LEAVES and (kind is not Decimal or value.is_finite()):
                    leaves[(kind, value)] = text
            return text
        if isinstance(value, dict):
            return self._canonical_raw(dict(value), node)
        if isinstance(value, list):
            return self._canonical_raw(list(value), node)
        return self._leaf_text(value)

    def _leaf_text(self, value: Any) -> str:
        if type(value) is str and not (self.decimal_numbers and _DECIMAL_STRING.fullmatch(value)):
            return encode_basestring_ascii(value)
        if self.decimal_numbers:
            value = _to_decimal(value)
        return self._canonical(self.quantized(value))

    def _child(self, node: _PathNode, key: Any, path: str) -> _PathNode:
        child = _PathNode(path, self._ignored(path), f"{json.dumps(str(key))}:")
        tree = self._tree
        if tree.size < _MAX_PATH_NODES:
            node.children[key] = child
            tree.size += 1
        return child

    def _canonical(self, value: Any) -> str:
        # Written by hand rather than with json.dumps(sort_keys=True) so that
        # equal Decimals with different exponents, and lists in any order,
        # produce the same text.
        if isinstance(value, dict):
            members = sorted(f"{json.dumps(str(k))}:{self._canonical(v)}" for k, v in value.items())
            return "{" + ",".join(members) + "}"
        if isinstance(value, list):
            items = [self._canonical(item) for item in value]
            if self.ignore_order:
                items.sort()
            return "[" + ",".join(items) + "]"
        if isinstance(value, Decimal):
            return _decimal_text(value)
        return json.dumps(value)


def _to_decimal(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr gives the shortest text that round-trips, so 19.9 becomes
        # Decimal("19.9") and not the binary expansion.
        return Decimal(repr(value)) if math.isfinite(value) else value
    if isinstance(value, str) and _DECIMAL_STRING.fullmatch(value):
        return Decimal(value)
    return value


def _decimal_text(value: Decimal) -> str:
    if value == 0:
        return "0"
    # The context's precision must cover every digit, or normalize() would
    # round a long id such as 10**30 + 1 to 10**30.
    normalised = value.normalize(_exact_context(max(28, len(value.as_tuple().digits))))
    # Written out in full, 1E+999999999 would take a gigabyte; such numbers
    # keep their exponent. Equal values take the same branch, so equal
    # numbers still have equal texts.
    if not -_PLAIN_EXPONENT < normalised.adjusted() < _PLAIN_EXPONENT:
        return str(normalised)
    return format(normalised, "f")


@dataclass(frozen=True)
class PayloadComparison:
    """The outcome of comparing the two flows' ERP payloads of one order."""

    equal: bool
    # Short human-readable description, legacy as the old value and the
    # candidate as the new one; empty when equal.
    difference: str = ""
    # The deepdiff paths that differ, noise included.
    paths: tuple[str, ...] = ()
    # True when the payloads differ only in noise paths, which makes them equal.
    noise: bool = False


# The outcome of most pairs; PayloadComparison is frozen, so one instance serves all.
_EQUAL = PayloadComparison(True)


def compare_payloads(
    legacy_snapshot: str, candidate_snapshot: str, normalisation: Normalisation
) -> PayloadComparison:
    """Compare two ERP request bodies (JSON text) after normalisation."""
    payloads = []
    for flow, snapshot in (("legacy", legacy_snapshot), ("candidate", candidate_snapshot)):
        try:
            payload = _decode(snapshot, normalisation)
        except json.JSONDecodeError as exc:
            return PayloadComparison(False, f"The {flow} snapshot is not valid JSON: {exc}.")
        if flow == "candidate":
            payload = normalisation.map_fields(payload)
        payloads.append(payload)
    return compare_decoded(payloads[0], payloads[1], normalisation)


def compare_decoded(legacy: Any, candidate: Any, normalisation: Normalisation) -> PayloadComparison:
    """Compare two decoded payloads, normalising them only when their digests differ."""
    if normalisation.payload_digest(legacy) == normalisation.payload_digest(candidate):
        return _EQUAL
    return compare_normalised(normalisation.apply(legacy), normalisation.apply(candidate), normalisation)


def compare_normalised(legacy: Any, candidate: Any, normalisation: Normalisation) -> PayloadComparison:
    """Compare two payloads that `Normalisation.apply` already normalised."""
    legacy_digest = normalisation.digest(normalisation.quantized(legacy))
    if legacy_digest == normalisation.digest(normalisation.quantized(candidate)):
        return _EQUAL

    # deepdiff costs about a millisecond a pair, so it gets only the members
    # that differ, and a difference met before (the same lines with the same
    # change, say) is described from the cache.
    legacy, candidate = _pruned(legacy, candidate, normalisation)
    cache = normalisation._tree.differences
    key = (repr(legacy), repr(candidate))
    comparison = cache.get(key)
    if comparison is None:
        comparison = _describe_difference(legacy, candidate, normalisation)
        if len(cache) < _MAX_CACHED_DIFFERENCES:
            cache[key] = comparison
    return comparison


def _describe_difference(legacy: Any, candidate: Any, normalisation: Normalisation) -> PayloadComparison:
    diff = _deep_diff(legacy, candidate, normalisation)
    if not diff:
        return _EQUAL
    paths = tuple(sorted(diff.affected_paths))
    if paths and all(normalisation.is_noise(path) for path in paths):
        return PayloadComparison(True, _describe(diff), paths, noise=True)
    return PayloadComparison(False, _describe(diff), paths)


def _pruned(legacy: Any, candidate: Any, normalisation: Normalisation) -> tuple[Any, Any]:
    """Drop the dict members equal in both payloads, at any depth, keeping the paths of the rest.

    deepdiff compares dict members key by key, so it finds the same
    differences, at the same paths, in what is left. Lists are kept whole,
    because with ignore_order their items are matched across the list.
    """
    if not (isinstance(legacy, dict) and isinstance(candidate, dict)):
        return legacy, candidate
    kept_legacy, pruned_members = {}, {}
    for key, value in legacy.items():
        if key not in candidate:
            kept_legacy[key] = value
        elif not _same(value, candidate[key], normalisation):
            kept_legacy[key], pruned_members[key] = _pruned(value, candidate[key], normalisation)
    # Each side keeps its own key order, which deepdiff's description follows.
    kept_candidate = {key: pruned_members.get(key, value) for key, value in candidate.items()
                      if key not in legacy or key in pruned_members}
    return kept_legacy, kept_candidate


def _same(legacy: Any, candidate: Any, normalisation: Normalisation) -> bool:
    return (normalisation._canonical(normalisation.quantized(legacy))
            == normalisation._canonical(normalisation.quantized(candidate)))


def _deep_diff(legacy: Any, candidate: Any, normalisation: Normalisation) -> DeepDiff:
    tolerance = normalisation.decimal_tolerance
    if tolerance is None:
        return DeepDiff(legacy, candidate, ignore_order=normalisation.ignore_order,
                        report_repetition=normalisation.ignore_order, **_DEEPER)

    # deepdiff applies math_epsilon to nested values only with ignore_order
    # off (deepdiff 8.6), so the candidate's lists are first put in the order
    # of the legacy flow's, each item next to one it matches within the
    # tolerance.
    if normalisation.ignore_order:
        legacy, candidate = _aligned(legacy, candidate, tolerance)
    return DeepDiff(legacy, candidate, math_epsilon=float(tolerance), **_DEEPER)


def _aligned(legacy: Any, candidate: Any, tolerance: Decimal) -> tuple[Any, Any]:
    """Reorder the lists of both payloads so that items equal within `tolerance` share an index.

    Lists of numbers are sorted: in one dimension, pairing sorted values
    finds a match within the tolerance whenever one exists. Other lists
    keep the legacy order, and each legacy item takes the first unmatched
    candidate item close to it.
    """
    if isinstance(legacy, dict) and isinstance(candidate, dict):
        pairs = {key: _aligned(legacy[key], candidate[key], tolerance)
                 for key in legacy if key in candidate}
        return ({key: pairs[key][0] if key in pairs else value for key, value in legacy.items()},
                {key: pairs[key][1] if key in pairs else value for key, value in candidate.items()})
    if not (isinstance(legacy, list) and isinstance(candidate, list)):
        return legacy, candidate

    if all(isinstance(item, Decimal) for item in (*legacy, *candidate)):
        return sorted(legacy), sorted(candidate)
    unmatched = list(range(len(candidate)))
    matches: list[int | None] = []
    for item in legacy:
        match = next((index for index in unmatched if _close(item, candidate[index], tolerance)), None)
        if match is not None:
            unmatched.remove(match)
        matches.append(match)
    # Items left over fill the places of legacy items without a match, so
    # that a line whose price moved beyond the tolerance is compared with
    # the line it replaced.
    leftovers = iter(unmatched)
    order = [match if match is not None else next(leftovers, None) for match in matches]
    order = [index for index in order if index is not None] + list(leftovers)
    reordered = [candidate[index] for index in order]
    pairs = [_aligned(item, other, tolerance) for item, other in zip(legacy, reordered, strict=False)]
    return ([pair[0] for pair in pairs] + legacy[len(pairs):],
            [pair[1] for pair in pairs] + reordered[len(pairs):])


def _close(legacy: Any, candidate: Any, tolerance: Decimal) -> bool:
    """Tell whether two normalised values are equal, numbers within `tolerance`, lists in any order."""
    if isinstance(legacy, Decimal) and isinstance(candidate, Decimal):
        if not (legacy.is_finite() and candidate.is_finite()):
            return legacy == candidate or (legacy.is_nan() and candidate.is_nan())
        return abs(legacy - candidate) <= tolerance
    if isinstance(legacy, dict) and isinstance(candidate, dict):
        return legacy.keys() == candidate.keys() and all(
            _close(value, candidate[key], tolerance) for key, value in legacy.items())
    if isinstance(legacy, list) and isinstance(candidate, list):
        if len(legacy) != len(candidate):
            return False
        aligned_legacy, aligned_candidate = _aligned(legacy, candidate, tolerance)
        return all(_close(item, other, tolerance)
                   for item, other in zip(aligned_legacy, aligned_candidate, strict=True))
    return type(legacy) is type(candidate) and legacy == candidate


def field_pattern(path: str) -> str:
    r"""Turn a deepdiff path into an ignore rule matching that field in every list element.

    ``root['item']['items'][3]['rate']`` becomes ``^root\['item'\]\['items'\]\[\d+\]\['rate'\]$``.
    """
    parts = re.split(r"\[\d+\]", path)
    return "^" + r"\[\d+\]".join(re.escape(part) for part in parts) + "$"


def _decode(snapshot: str, normalisation: Normalisation) -> Any:
    # Decimal keeps every digit of a JSON number; a float would round it.
    decoder = _DECIMAL_DECODER if normalisation.decimal_numbers else _FLOAT_DECODER
    return decoder.decode(snapshot)


# json.loads with keyword arguments builds a decoder per call.
_DECIMAL_DECODER = json.JSONDecoder(parse_float=Decimal)
_FLOAT_DECODER = json.JSONDecoder()


def _describe(diff: DeepDiff) -> str:
    lines = []
    for path, change in diff.get("repetition_change", {}).items():
        lines.append(
            f"{path} occurs {change['old_repeat']} times in legacy and "
            f"{change['new_repeat']} times in candidate."
        )
    for line in diff.pretty().splitlines():
        if not line.startswith("Repetition change"):
            lines.append(line)

    text = " ".join(lines[:_DIFF_LINES])
    if len(lines) > _DIFF_LINES:
        text += f" (and {len(lines) - _DIFF_LINES} more differences)"
    return text


def _path_tuple(name: str, paths: Any) -> tuple[str, ...]:
    if isinstance(paths, str):
        raise TypeError(
            f"{name} must be a sequence of regular expressions, but got the string "
            f"{paths!r}; wrap it in a tuple."
        )
    return tuple(paths)


def _compile_paths(label: str, paths: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    patterns = []
    for path in paths:
        try:
            patterns.append(re.compile(path))
        except re.error as exc:
            raise ValueError(
                f"Invalid {label} {path!r}: {exc}. Use a regular expression over "
                r"deepdiff paths, such as \['memo'\] to ignore every memo field."
            ) from exc
    return tuple(patterns)


def _tolerance(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        tolerance = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(
            f"decimal_tolerance must be a number such as 0.01, but got {value!r}"
        ) from exc
    if not tolerance.is_finite() or tolerance <= 0:
        raise ValueError(
            f"decimal_tolerance must be a number above 0 such as 0.01, but got {value!r}; "
            "leave it out for exact comparison."
        )
    return tolerance


_FIELD_PATH = re.compile(r"[^.\[\]]+(\[\])?(\.[^.\[\]]+(\[\])?)*")


def _field_map(pairs: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(pairs, dict):
        pairs = pairs.items()
    checked = []
    for pair in pairs:
        source, target = pair
        for path in (source, target):
            if not isinstance(path, str) or not _FIELD_PATH.fullmatch(path):
                raise ValueError(
                    f"Invalid field_map path {path!r}: use dotted keys with [] for every "
                    "list element, such as 'item.items[].sku'."
                )
        if _list_prefix(source) != _list_prefix(target):
            raise ValueError(
                f"Invalid field_map pair {source!r} -> {target!r}: both paths must share the "
                "part up to their first [], such as 'lines[].sku' -> 'lines[].item.externalId'."
            )
        checked.append((source, target))
    return tuple(checked)


def _list_prefix(path: str) -> str | None:
    return path.split("[]", 1)[0] if "[]" in path else None


def _move_field(payload: Any, source: str, target: str) -> Any:
    """Move the value at dotted `source` to dotted `target` in a copy of `payload`."""
    if "[]" in source:
        prefix, source_rest = source.split("[]", 1)
        target_rest = target.split("[]", 1)[1]
        items = _get_path(payload, prefix)
        if not isinstance(items, list):
            return payload
        moved = [_move_field(item, source_rest.lstrip("."), target_rest.lstrip("."))
                 for item in items]
        return _set_path(payload, prefix, moved)

    missing = object()
    value = _get_path(payload, source, missing)
    if value is missing:
        return payload
    return _set_path(_delete_path(payload, source), target, value)


def _get_path(payload: Any, path: str, default: Any = None) -> Any:
    for key in path.split("."):
        if not isinstance(payload, dict) or key not in payload:
            return default
        payload = payload[key]
    return payload


def _set_path(payload: Any, path: str, value: Any) -> Any:
    key, _, rest = path.partition(".")
    copy = dict(payload) if isinstance(payload, dict) else {}
    copy[key] = _set_path(copy.get(key), rest, value) if rest else value
    return copy


def _delete_path(payload: Any, path: str) -> Any:
    key, _, rest = path.partition(".")
    if not isinstance(payload, dict) or key not in payload:
        return payload
    copy = dict(payload)
    if rest:
        copy[key] = _delete_path(copy[key], rest)
    else:
        del copy[key]
    return copy
