"""Planning: captured timing, speed, rate, pause cap, loops, sample, delivery behaviour."""

from __future__ import annotations

import pytest

from replay import (
    Behaviour,
    CapturedRequest,
    DeliveryKind,
    OnError,
    ReadProblems,
    Timing,
    compile_key_rule,
    parse_share,
    plan,
)

KEY_RULE = compile_key_rule("id")


def request(order_id: int, timestamp: float | None) -> CapturedRequest:
    body = b'{"id":%d,"note":"x"}' % order_id
    return CapturedRequest("POST", "/hook", (("X-Shopify-Event-Id", f"event-{order_id}"),), body,
                           timestamp, "test", order_id)


def offsets(requests, timing=Timing(), behaviour=Behaviour()):
    deliveries = list(plan(requests, timing, behaviour, key_rule=KEY_RULE, problems=ReadProblems(), keys=True))
    return [(delivery.order_key, round(delivery.offset_s, 6), delivery.kind) for delivery in deliveries]


def test_plan_keeps_captured_pauses():
    requests = [request(1, 100.0), request(2, 100.5), request(3, 102.0)]

    planned = [offset for _, offset, _ in offsets(requests)]

    assert planned == [0.0, 0.5, 2.0]


def test_plan_speed_divides_pauses():
    requests = [request(1, 100.0), request(2, 100.5), request(3, 102.0)]

    planned = [offset for _, offset, _ in offsets(requests, Timing(speed=10))]

    assert planned == [0.0, 0.05, 0.2]


def test_plan_max_pause_caps_each_pause():
    requests = [request(1, 100.0), request(2, 100.5), request(3, 3700.0)]

    planned = [offset for _, offset, _ in offsets(requests, Timing(max_pause_s=1.0))]

    assert planned == [0.0, 0.5, 1.5]


def test_plan_fixed_rate_ignores_capture_times():
    requests = [request(1, 100.0), request(2, 500.0), request(3, None)]

    planned = [offset for _, offset, _ in offsets(requests, Timing(rate=4))]

    assert planned == [0.0, 0.25, 0.5]


def test_plan_puts_capture_back_in_time_order():
    requests = [request(2, 101.0), request(1, 100.0), request(3, 102.0)]

    planned = [(delivery[0], delivery[1]) for delivery in offsets(requests)]

    assert planned == [("1", 0.0), ("2", 1.0), ("3", 2.0)]


def test_plan_loops_read_source_again():
    requests = [request(1, 100.0), request(2, 101.0)]

    planned = [(key, offset) for key, offset, _ in offsets(requests, Timing(loops=2))]

    assert planned == [("1", 0.0), ("2", 1.0), ("1", 1.0), ("2", 2.0)]


def test_plan_sample_is_deterministic_by_order_key():
    requests = [request(order_id, float(order_id)) for order_id in range(1, 2001)]

    first = [key for key, _, _ in offsets(requests, Timing(sample=0.1, max_pause_s=0))]
    again = [key for key, _, _ in offsets(list(reversed(requests)), Timing(sample=0.1, max_pause_s=0))]

    assert 150 <= len(first) <= 250
    assert sorted(first) == sorted(again)


def test_plan_duplicates_and_retries_follow_original():
    requests = [request(order_id, float(order_id)) for order_id in range(1, 201)]
    behaviour = Behaviour(duplicate=0.1, duplicate_delay_s=0.5, retry=0.05, retry_delay_s=30, seed=3)

    planned = offsets(requests, Timing(), behaviour)

    originals = {key: offset for key, offset, kind in planned if kind is DeliveryKind.ORIGINAL}
    duplicates = [(key, offset) for key, offset, kind in planned if kind is DeliveryKind.DUPLICATE]
    retries = [(key, offset) for key, offset, kind in planned if kind is DeliveryKind.RETRY]
    assert len(originals) == 200
    assert 8 <= len(duplicates) <= 35
    assert 3 <= len(retries) <= 20
    assert all(0 <= offset - originals[key] <= 0.5 for key, offset in duplicates)
    assert all(offset - originals[key] == pytest.approx(30) for key, offset in retries)
    assert [offset for _, offset, _ in planned] == sorted(offset for _, offset, _ in planned)


def test_plan_behaviour_is_reproducible_with_seed():
    requests = [request(order_id, float(order_id)) for order_id in range(1, 101)]
    behaviour = Behaviour(duplicate=0.2, retry=0.1, out_of_order=0.1, late=0.1, seed=11)

    assert offsets(requests, Timing(), behaviour) == offsets(requests, Timing(), behaviour)
    assert offsets(requests, Timing(), behaviour) != offsets(requests, Timing(), Behaviour(
        duplicate=0.2, retry=0.1, out_of_order=0.1, late=0.1, seed=12))


def test_plan_out_of_order_swaps_with_next():
    requests = [request(order_id, float(order_id)) for order_id in range(1, 4)]

    planned = offsets(requests, Timing(), Behaviour(out_of_order=1.0))

    assert [(key, kind) for key, _, kind in planned] == [
        ("2", DeliveryKind.ORIGINAL), ("1", DeliveryKind.OUT_OF_ORDER),
        ("3", DeliveryKind.OUT_OF_ORDER),
    ]


def test_plan_late_delivery_moves_by_delay():
    requests = [request(1, 100.0), request(2, 101.0)]

    planned = offsets(requests, Timing(), Behaviour(late=1.0, late_delay_s=5))

    assert planned == [("1", 5.0, DeliveryKind.LATE), ("2", 6.0, DeliveryKind.LATE)]


def test_plan_rejects_invalid_timing():
    with pytest.raises(ValueError, match="speed must be a positive number"):
        Timing(speed=0)
    with pytest.raises(ValueError, match="sample must be above 0"):
        Timing(sample=0)
    with pytest.raises(ValueError, match="duplicate must be between 0 and 1"):
        Behaviour(duplicate=2)


@pytest.mark.parametrize(("text", "expected"), [("10%", 0.1), ("0.25", 0.25), ("100%", 1.0), ("0", 0.0)])
def test_parse_share_reads_percent_and_fraction(text, expected):
    assert parse_share(text) == pytest.approx(expected)


def test_parse_share_rejects_out_of_range():
    with pytest.raises(ValueError, match="between 0% and 100%"):
        parse_share("150%")


def test_plan_rewrite_failure_goes_to_problems():
    from replay import IdRewriter

    rewriter = IdRewriter("secret", prefix="9", key_rule=KEY_RULE)
    requests = [request(1, 1.0), CapturedRequest("POST", "/", (), b"not json", 2.0, "test", 2), request(3, 3.0)]
    problems = ReadProblems(on_error=OnError.SKIP)

    deliveries = list(plan(requests, Timing(), Behaviour(), key_rule=KEY_RULE, problems=problems,
                           rewriter=rewriter))

    assert [delivery.original_key for delivery in deliveries] == ["1", "3"]
    assert problems.count == 1
    assert "test, record 2: no order key" in str(problems.kept[0])


def test_plan_reads_no_keys_unless_needed():
    deliveries = list(plan([request(1, 1.0)], Timing(), Behaviour(), key_rule=KEY_RULE, problems=ReadProblems()))

    assert deliveries[0].order_key is None


def test_plan_shares_draw_independently():
    requests = [request(order_id, float(order_id)) for order_id in range(1, 201)]

    def late_keys(duplicate: float) -> list[str]:
        planned = offsets(requests, Timing(), Behaviour(late=0.1, duplicate=duplicate, seed=9))
        return [key for key, _, kind in planned if kind is DeliveryKind.LATE]

    assert late_keys(0.0) == late_keys(0.5)
    assert late_keys(0.0)
