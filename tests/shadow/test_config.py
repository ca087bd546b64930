"""Parsing the shadow configuration, and its error messages."""

from __future__ import annotations

import pytest

from shadow.config import ConfigError, load_config, parse_config

INGRESS = {
    "name": "ingress", "role": "ingress", "listen": 18200,
    "upstream": "http://127.0.0.1:18101", "mirror_to": "http://127.0.0.1:18102",
}


def test_config_reads_toml_with_defaults(tmp_path):
    path = tmp_path / "cutover.toml"
    path.write_text(
        '[mirror]\nqueue_size = 50\n\n'
        '[[route]]\nname = "ingress"\nrole = "ingress"\nlisten = "127.0.0.1:18200"\n'
        'upstream = "http://127.0.0.1:18101"\nmirror_to = "http://127.0.0.1:18102/"\n\n'
        '[[route]]\nname = "c-email"\nrole = "email"\nflow = "candidate"\nlisten = 18201\n'
        'upstream = "http://127.0.0.1:18105"\nquarantine = true\n',
        encoding="utf-8",
    )
    config = load_config(path)

    ingress, email = config.routes
    assert config.mirror.queue_size == 50
    assert ingress.mirror_to == "http://127.0.0.1:18102"
    assert ingress.key_rule.search({"id": 7}) == 7
    assert ingress.mode_spec == "reverse:http://127.0.0.1:18101@127.0.0.1:18200"
    assert email.quarantine is True
    assert email.key_rule.search({"custom_args": {"order_id": "7"}}) == "7"
    assert config.route_for_port(18201) is email


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"role": "webhook"}, "role must be one of ingress, erp, email", id="bad-role"),
        pytest.param({"listen": 70000}, "listen must be a port", id="bad-port"),
        pytest.param({"upstream": "127.0.0.1:18101"}, "upstream must be an http", id="no-scheme"),
        pytest.param({"mirror_to": None}, "mirror_to must be an http", id="no-mirror"),
        pytest.param({"key": "line_items["}, "invalid key rule 'line_items\\['", id="bad-jmespath"),
        pytest.param({"flow": "new"}, "flow must be 'legacy' or 'candidate'", id="bad-flow"),
        pytest.param({"quarantine": True}, "quarantine is only valid on an email route", id="quarantine"),
    ],
)
def test_config_rejects_bad_route(change, message):
    route = {**INGRESS, **change}
    with pytest.raises(ConfigError, match=message):
        parse_config({"route": [route]})


def test_config_rejects_two_routes_on_one_port():
    erp = {"name": "erp", "role": "erp", "listen": 18200, "upstream": "http://127.0.0.1:1"}
    with pytest.raises(ConfigError, match="both listen on port 18200"):
        parse_config({"route": [INGRESS, erp]})


def test_config_needs_an_ingress_route():
    erp = {"name": "erp", "role": "erp", "listen": 18201, "upstream": "http://127.0.0.1:1"}
    with pytest.raises(ConfigError, match="no route has role = 'ingress'"):
        parse_config({"route": [erp]})


def test_config_rejects_bad_mirror_size():
    with pytest.raises(ConfigError, match=r"\[mirror\] queue_size must be a positive integer"):
        parse_config({"route": [INGRESS], "mirror": {"queue_size": 0}})


def test_config_names_the_file_on_syntax_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[[route]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"Invalid shadow configuration .*broken\.toml"):
        load_config(path)
