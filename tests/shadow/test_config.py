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


def test_config_preset_sets_defaults():
    erp = {"name": "erp", "role": "erp", "listen": 18201, "upstream": "http://127.0.0.1:1",
           "preset": "sap_s4hana"}
    email = {"name": "email", "role": "email", "listen": 18202, "upstream": "http://127.0.0.1:2",
             "preset": "postmark"}
    _, erp_route, email_route = parse_config({"route": [INGRESS, erp, email]}).routes

    assert erp_route.key_rule_text == "PurchaseOrderByCustomer"
    assert erp_route.submit_methods == ("POST",)
    assert erp_route.path_key is None
    assert email_route.email_kinds.rule.search({"Tag": "order_confirmation"}) == "order_confirmation"


def test_config_route_settings_override_preset():
    email = {"name": "email", "role": "email", "listen": 18202, "upstream": "http://127.0.0.1:2",
             "preset": "postmark", "key": "Metadata.shop_order", "kind": "MessageStream",
             "confirmation": ["outbound"]}
    _, email_route = parse_config({"route": [INGRESS, email]}).routes
    assert email_route.key_rule_text == "Metadata.shop_order"
    assert email_route.email_kinds.rule.search({"MessageStream": "outbound"}) == "outbound"
    assert email_route.email_kinds.confirmation == frozenset({"outbound"})
    assert email_route.preset.name == "postmark"


def test_config_default_presets():
    erp = {"name": "erp", "role": "erp", "listen": 18201, "upstream": "http://127.0.0.1:1"}
    ingress, erp_route = parse_config({"route": [INGRESS, erp]}).routes
    assert ingress.preset.name == "shopify"
    assert erp_route.preset.name == "netsuite"
    assert erp_route.path_key.pattern == r"/eid:([^/?]+)"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"preset": "magento"}, "unknown preset 'magento' for role ingress. "
                     "Use one of shopify, bigcommerce, woocommerce, adobe_commerce", id="unknown"),
        pytest.param({"preset": "netsuite"}, "unknown preset 'netsuite' for role ingress",
                     id="wrong-role"),
        pytest.param({"legacy_confirmation_from": "order_time"},
                     "legacy_confirmation_from must be one of triggered_at, created_at",
                     id="bad-source"),
        pytest.param({"preset": "woocommerce", "legacy_confirmation_from": "triggered_at"},
                     "preset 'woocommerce' sends no trigger-time header", id="no-header"),
    ],
)
def test_config_rejects_bad_preset(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"route": [{**INGRESS, **change}]})


def test_config_legacy_confirmation_only_on_ingress():
    erp = {"name": "erp", "role": "erp", "listen": 18201, "upstream": "http://127.0.0.1:1",
           "legacy_confirmation_from": "created_at"}
    with pytest.raises(ConfigError, match="legacy_confirmation_from is only valid on the ingress"):
        parse_config({"route": [INGRESS, erp]})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"route": [INGRESS, {"name": "email", "role": "email", "listen": 18201,
                                          "upstream": "http://127.0.0.1:1", "quarantin": True}]},
                     "unknown key\\(s\\) 'quarantin' in this route", id="misspelt-quarantine"),
        pytest.param({"route": [INGRESS], "mirrror": {}}, "unknown key\\(s\\) 'mirrror' in the top level",
                     id="misspelt-table"),
        pytest.param({"route": [INGRESS], "mirror": {"queue": 5}}, "unknown key\\(s\\) 'queue' in \\[mirror\\]",
                     id="misspelt-mirror-key"),
        pytest.param({"route": [{**INGRESS, "kind": "categories[0]"}]},
                     "kind is only valid on email routes", id="kind-on-ingress"),
        pytest.param({"route": [INGRESS], "ledger": {"url": "foo://bar"}},
                     "url must start with sqlite:/// or postgresql://", id="ledger-scheme"),
        pytest.param({"route": [INGRESS], "ledger": {"run_id": "../../evil"}},
                     "run_id may hold only letters", id="run-id-path"),
        pytest.param({"route": [INGRESS, {**INGRESS, "listen": 18299}]},
                     "route name\\(s\\) 'ingress' used more than once", id="duplicate-name"),
        pytest.param({"route": [{**INGRESS, "role": None}]}, "role is missing", id="missing-role"),
    ],
)
def test_config_rejects_typos_and_unsafe_values(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(data)
