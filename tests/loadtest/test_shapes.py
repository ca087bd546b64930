"""Load profiles: built-in shapes, durations and custom stages from TOML."""

from __future__ import annotations

import pytest

from loadtest.shapes import (
    BFCM_MAX_RAMP_S,
    Profile,
    ProfileError,
    build_profile,
    load_stages,
    parse_duration,
)


@pytest.mark.parametrize(("text", "seconds"), [
    pytest.param("90", 90.0, id="bare-number"),
    pytest.param("90s", 90.0, id="seconds"),
    pytest.param("3m", 180.0, id="minutes"),
    pytest.param("1m30s", 90.0, id="minutes-and-seconds"),
    pytest.param("1h", 3600.0, id="hours"),
    pytest.param("500ms", 0.5, id="milliseconds"),
    pytest.param(12.5, 12.5, id="float"),
])
def test_parse_duration_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "m3", "-5s", "0", "1m 30s", "ten"])
def test_parse_duration_rejects_invalid(text):
    with pytest.raises(ProfileError, match="Invalid duration"):
        parse_duration(text)


def test_bfcm_ramps_to_ten_times_baseline():
    profile = build_profile("bfcm", 200, 180)

    names = [stage.name for stage in profile.stages]
    assert names == ["baseline", "ramp", "peak", "decay"]
    baseline, ramp, peak, decay = profile.stages
    assert baseline.start_rate == baseline.end_rate == 20
    assert (ramp.start_rate, ramp.end_rate) == (20, 200)
    assert ramp.duration_s < 60
    assert peak.start_rate == peak.end_rate == 200
    assert (decay.start_rate, decay.end_rate) == (200, 20)
    assert profile.duration_s == pytest.approx(180)


def test_bfcm_ramp_capped_on_long_runs():
    ramp = build_profile("bfcm", 100, 3600).stages[1]

    assert ramp.duration_s == BFCM_MAX_RAMP_S


def test_flash_sale_steps_to_twenty_times():
    baseline, sale, after = build_profile("flash-sale", 200, 100).stages

    assert sale.start_rate == sale.end_rate == 200
    assert baseline.end_rate == 10
    assert after.start_rate == 10


def test_steady_is_one_flat_stage():
    profile = build_profile("steady", 30, 60)

    assert len(profile.stages) == 1
    assert profile.planned_orders == pytest.approx(1800)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match=r"Unknown load profile 'cyber'.*bfcm"):
        build_profile("cyber", 10, 10)


@pytest.mark.parametrize(("rate", "duration"), [(0, 10), (-1, 10), (10, 0), (float("nan"), 10)])
def test_build_profile_rejects_bad_numbers(rate, duration):
    with pytest.raises(ProfileError, match="Invalid"):
        build_profile("steady", rate, duration)


def test_point_at_interpolates_and_ends():
    profile = build_profile("bfcm", 100, 100)
    _baseline, ramp, _peak, _decay = profile.boundaries()
    stage, start, end = ramp

    middle = profile.point_at((start + end) / 2)
    assert middle[0] is stage
    assert middle[1] == pytest.approx(55)
    assert profile.point_at(profile.duration_s + 0.01) is None


def test_profile_round_trips_through_dict():
    profile = build_profile("bfcm", 60, 45)

    assert Profile.from_dict(profile.to_dict()) == profile


def test_load_stages_reads_flat_and_ramp(tmp_path):
    path = tmp_path / "cyber-monday.toml"
    path.write_text(
        '[[stage]]\nname = "warm"\nduration = "30s"\nrate = 10\n\n'
        '[[stage]]\nname = "doorbuster"\nduration = "1m"\nstart_rate = 10\nrate = 150\n',
        encoding="utf-8",
    )

    profile = load_stages(path)

    assert profile.name == "cyber-monday"
    assert [s.name for s in profile.stages] == ["warm", "doorbuster"]
    assert profile.stages[1].duration_s == 60
    assert (profile.stages[1].start_rate, profile.stages[1].end_rate) == (10, 150)
    assert profile.stages[0].start_rate == 10


@pytest.mark.parametrize(("text", "message"), [
    pytest.param('title = "x"\n', "no \\[\\[stage\\]\\] tables", id="no-stages"),
    pytest.param('[[stage]]\nname = "a"\nrate = 5\n', "Missing 'duration' in stage 1", id="missing-duration"),
    pytest.param('[[stage]]\nname = "a"\nduration = "5s"\nrate = 5\nusers = 3\n', "Unknown key.*users",
                 id="unknown-key"),
    pytest.param('[[stage]]\nname = "a"\nduration = "5q"\nrate = 5\n', "Invalid duration '5q'.*stage 1",
                 id="bad-duration"),
    pytest.param('[[stage]]\nname = "a"\nduration = "5s"\nrate = -2\n', "Invalid rate -2", id="negative-rate"),
    pytest.param('[[stage]]\nname = "a"\nduration = "5s"\nrate = 5\n[[stage]]\nname = "a"\nduration = "5s"\n'
                 'rate = 5\n', "appear twice", id="duplicate-name"),
    pytest.param('[[stage]]\nname = "a"\nduration = "5s"\nrate = 0\n', "rate 0", id="all-zero"),
    pytest.param('[[stage]\nname = "a"\n', "Invalid TOML", id="bad-toml"),
])
def test_load_stages_rejects_invalid(tmp_path, text, message):
    path = tmp_path / "stages.toml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ProfileError, match=message):
        load_stages(path)


def test_load_stages_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="Can't read the stage file"):
        load_stages(tmp_path / "absent.toml")
