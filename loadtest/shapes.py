"""Holiday load profiles stated as arrival rates, in webhooks per second.

A profile is a sequence of named stages. Each stage lasts a number of
seconds and moves the offered rate linearly from its start rate to its end
rate (equal for a flat stage). The stage names are the load phases the
report shows. This module has no Locust import: the CLI, the analysis and the
locustfile all read the same schedule from it.

Built-in profiles, for a peak rate R and a total duration D:

- `steady`: R for all of D.
- `bfcm`: a baseline at R/10, a ramp to R in at most 50 s, a plateau at R,
  and a linear decay back to the baseline.
- `flash-sale`: a baseline at R/20, a step to R, and a step back down.

`load_stages` reads custom stages from a TOML file::

    [[stage]]
    name = "warm-up"
    duration = "30s"
    rate = 10            # webhooks/s

    [[stage]]
    name = "doorbuster"
    duration = "20s"
    start_rate = 10      # a linear ramp from 10 to 150 webhooks/s
    rate = 150
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PROFILES",
    "Profile",
    "ProfileError",
    "Stage",
    "build_profile",
    "load_stages",
    "parse_duration",
]

PROFILES = ("steady", "bfcm", "flash-sale")

# The bfcm ramp reaches the peak in under a minute whatever the duration.
BFCM_MAX_RAMP_S = 50.0

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class ProfileError(ValueError):
    """A load profile, a duration or a stage table is invalid."""


@dataclass(frozen=True)
class Stage:
    """One load phase: a name, a length in seconds and a linear rate in webhooks/s."""

    name: str
    duration_s: float
    start_rate: float
    end_rate: float

    def rate_at(self, offset_s: float) -> float:
        """Return the offered rate `offset_s` seconds into the stage."""
        if self.duration_s <= 0:
            return self.end_rate
        share = min(max(offset_s / self.duration_s, 0.0), 1.0)
        return self.start_rate + (self.end_rate - self.start_rate) * share

    @property
    def planned_orders(self) -> float:
        """Orders the stage offers: the integral of its rate over its length."""
        return (self.start_rate + self.end_rate) / 2 * self.duration_s


@dataclass(frozen=True)
class Profile:
    """A named sequence of stages; time 0 is the start of the first stage."""

    name: str
    stages: tuple[Stage, ...]

    @property
    def duration_s(self) -> float:
        return sum(stage.duration_s for stage in self.stages)

    @property
    def peak_rate(self) -> float:
        return max(max(stage.start_rate, stage.end_rate) for stage in self.stages)

    @property
    def planned_orders(self) -> float:
        return sum(stage.planned_orders for stage in self.stages)

    def point_at(self, elapsed_s: float) -> tuple[Stage, float] | None:
        """Return the stage and the offered rate at `elapsed_s`, or None after the end."""
        start = 0.0
        for stage in self.stages:
            if elapsed_s < start + stage.duration_s:
                return stage, stage.rate_at(elapsed_s - start)
            start += stage.duration_s
        return None

    def boundaries(self) -> list[tuple[Stage, float, float]]:
        """Return each stage with its start and end in seconds from the profile's start."""
        rows = []
        start = 0.0
        for stage in self.stages:
            rows.append((stage, start, start + stage.duration_s))
            start += stage.duration_s
        return rows

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "stages": [
                {"name": s.name, "duration_s": s.duration_s,
                 "start_rate": s.start_rate, "end_rate": s.end_rate}
                for s in self.stages
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        stages = tuple(
            Stage(str(s["name"]), float(s["duration_s"]), float(s["start_rate"]), float(s["end_rate"]))
            for s in data["stages"]
        )
        return _checked(Profile(str(data["name"]), stages), "the profile")


def parse_duration(text: str | float) -> float:
    """Parse a duration such as `90`, `90s`, `3m`, `1m30s` or `1h` into seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", value):
            seconds = float(value)
        else:
            parts = _DURATION_PART.findall(value)
            if not parts or "".join(number + unit for number, unit in parts) != value:
                raise ProfileError(
                    f"Invalid duration {text!r}. Use seconds or units h, m, s, ms, such as 90s, 3m or 1m30s."
                )
            scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
            seconds = sum(float(number) * scale[unit] for number, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ProfileError(f"Invalid duration {text!r}: it must be above 0 seconds.")
    return seconds


def build_profile(name: str, peak_rate: float, duration_s: float) -> Profile:
    """Build a built-in profile for a peak rate in webhooks/s and a total length in seconds."""
    if not math.isfinite(peak_rate) or peak_rate <= 0:
        raise ProfileError(f"Invalid peak rate {peak_rate!r}: it must be above 0 webhooks/s.")
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise ProfileError(f"Invalid duration {duration_s!r}: it must be above 0 seconds.")

    if name == "steady":
        stages = (Stage("steady", duration_s, peak_rate, peak_rate),)
    elif name == "bfcm":
        stages = _bfcm(peak_rate, duration_s)
    elif name == "flash-sale":
        baseline = peak_rate / 20
        stages = (
            Stage("baseline", 0.3 * duration_s, baseline, baseline),
            Stage("sale", 0.4 * duration_s, peak_rate, peak_rate),
            Stage("after", 0.3 * duration_s, baseline, baseline),
        )
    else:
        raise ProfileError(
            f"Unknown load profile {name!r}. Use one of {', '.join(PROFILES)}, or custom stages from a TOML file."
        )
    return Profile(name, stages)


def _bfcm(peak_rate: float, duration_s: float) -> tuple[Stage, ...]:
    baseline = peak_rate / 10
    ramp = min(0.15 * duration_s, BFCM_MAX_RAMP_S)
    rest = duration_s - ramp
    return (
        Stage("baseline", 0.25 * rest, baseline, baseline),
        Stage("ramp", ramp, baseline, peak_rate),
        Stage("peak", 0.45 * rest, peak_rate, peak_rate),
        Stage("decay", 0.30 * rest, peak_rate, baseline),
    )


def load_stages(path: Path) -> Profile:
    """Read custom stages from the `[[stage]]` array of a TOML file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"Can't read the stage file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"Invalid TOML in the stage file {path}: {exc}") from exc

    items = data.get("stage")
    if not isinstance(items, list) or not items:
        raise ProfileError(
            f"The stage file {path} has no [[stage]] tables. Add at least one with name, duration and rate."
        )
    stages = tuple(_parse_stage(item, index, path) for index, item in enumerate(items, start=1))
    return _checked(Profile(path.stem, stages), str(path))


def _parse_stage(item: object, index: int, path: Path) -> Stage:
    where = f"stage {index} of {path}"
    if not isinstance(item, dict):
        raise ProfileError(f"Invalid {where}: expected a table with name, duration and rate.")
    unknown = sorted(set(item) - {"name", "duration", "rate", "start_rate"})
    if unknown:
        raise ProfileError(f"Unknown key(s) {', '.join(unknown)} in {where}; expected name, duration, rate, start_rate.")
    for key in ("name", "duration", "rate"):
        if key not in item:
            raise ProfileError(f"Missing {key!r} in {where}.")

    try:
        duration_s = parse_duration(item["duration"])
    except ProfileError as exc:
        raise ProfileError(f"{exc} (in {where})") from exc
    end_rate = _rate(item["rate"], "rate", where)
    start_rate = _rate(item.get("start_rate", end_rate), "start_rate", where)
    return Stage(str(item["name"]), duration_s, start_rate, end_rate)


def _rate(value: object, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ProfileError(f"Invalid {key} {value!r} in {where}: it must be a number of webhooks/s, 0 or more.")
    return float(value)


def _checked(profile: Profile, source: str) -> Profile:
    names = [stage.name for stage in profile.stages]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ProfileError(f"Stage name(s) {', '.join(duplicates)} appear twice in {source}; give each stage its own name.")
    if profile.peak_rate <= 0:
        raise ProfileError(f"Every stage in {source} has rate 0; give at least one stage a rate above 0.")
    return profile
