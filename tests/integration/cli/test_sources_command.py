"""``stockwire sources list|check``: the profile each source reads with, and what a sample maps to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stockwire.cli import main as stockwire

FIXTURES = Path(__file__).parents[2] / "fixtures" / "commerce_engine"


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration file of two sources; the test may rewrite it (configuration only, no code)."""
    config = tmp_path / "stockwire.toml"
    config.write_text(
        '[sources.store]\nsecrets = ["s"]\nprofile = "commerce-engine"\n'
        '[sources.pay]\nsecrets = ["p"]\nprofile = "stockwire"\norders_source = "store"\n'
    )
    monkeypatch.setenv("STOCKWIRE_CONFIG", str(config))
    return config


def test_list_names_each_source_s_scheme_profile_and_orders(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stockwire(["sources", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "pay: scheme commerce-engine, profile stockwire, orders of store",
        "store: scheme commerce-engine, profile commerce-engine",
    ]


def test_check_prints_the_canonical_event_of_a_sample(configured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stockwire(["sources", "check", "store", str(FIXTURES / "01-order.created.json")]) == 0
    mapped = json.loads(capsys.readouterr().out)
    assert (mapped["kind"], mapped["event"]["order_key"]) == ("order_placed", "ORD-2026-000101")
    tee = mapped["event"]["lines"][0]
    assert (tee["sku"], tee["quantity"]) == ("TEE-ORG-BLK-M", 3)  # 2 paid + 1 free


def test_an_override_in_the_configuration_changes_the_mapping(
    configured: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads((FIXTURES / "01-order.created.json").read_text())
    for item in document["data"]["order_items"]:
        item["variant_sku"] = "ERP-" + item.pop("sku")  # this store keeps its SKU elsewhere
    sample = tmp_path / "order.json"
    sample.write_text(json.dumps(document))
    assert stockwire(["sources", "check", "store", str(sample)]) == 1
    assert "data.order_items[0].sku: required, missing or null" in capsys.readouterr().err

    configured.write_text(
        configured.read_text() + '[sources.store.mapping.kinds.order_placed.lines]\nsku = "variant_sku || sku"\n'
    )
    assert stockwire(["sources", "check", "store", str(sample)]) == 0
    lines = json.loads(capsys.readouterr().out)["event"]["lines"]
    assert [line["sku"] for line in lines][:2] == ["ERP-TEE-ORG-BLK-M", "ERP-MUG-CER-350-WHT"]


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["sources", "check", "store"], "give the source and a file"),
        (["sources", "check", "nobody", "x.json"], "no source 'nobody' (sources: pay, store)"),
        (["sources", "check", "store", "/nonexistent/x.json"], "cannot read /nonexistent/x.json"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    configured: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], complaint: str
) -> None:
    assert stockwire(arguments) == 2
    err = capsys.readouterr().err
    assert complaint in err and len(err.strip().splitlines()) == 1


PLATFORMS = Path(__file__).parents[2] / "fixtures"


@pytest.fixture
def platforms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Shopify store and the Stripe account that takes its payments; each names its profile only."""
    config = tmp_path / "stockwire.toml"
    config.write_text(
        '[sources.shopify]\nsecrets = ["s"]\nprofile = "shopify"\n'
        '[sources.stripe]\nsecrets = ["whsec_p"]\nprofile = "stripe"\norders_source = "shopify"\n'
    )
    monkeypatch.setenv("STOCKWIRE_CONFIG", str(config))
    return config


def _body(tmp_path: Path, platform: str, name: str, **changes: object) -> Path:
    body = json.loads((PLATFORMS / platform / name).read_text())["body"]
    body.update(changes)
    sample = tmp_path / name
    sample.write_text(json.dumps(body))
    return sample


def test_a_profile_implies_its_scheme(platforms: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stockwire(["sources", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "shopify: scheme shopify, profile shopify",
        "stripe: scheme stripe, profile stripe, orders of shopify",
    ]


def test_a_topic_that_travels_in_a_header_is_asked_for(
    platforms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _body(tmp_path, "shopify", "01-orders.create-a-pending.json")
    assert stockwire(["sources", "check", "shopify", str(sample)]) == 2
    assert "X-Shopify-Topic".lower() in capsys.readouterr().err.lower()
    assert stockwire(["sources", "check", "shopify", str(sample), "--type", "orders/create"]) == 0
    mapped = json.loads(capsys.readouterr().out)
    assert (mapped["kind"], mapped["event"]["order_key"]) == ("order_placed", "5735370481727")
    # The gift card (no SKU) holds no stock: three lines of four.
    assert [line["sku"] for line in mapped["event"]["lines"]] == ["TEE-RED-M", "MUG-BLK", "CAP-GRY"]


def test_an_override_in_toml_changes_a_shopify_mapping(
    platforms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _body(tmp_path, "shopify", "01-orders.create-a-pending.json", financial_status="authorized")
    check = ["sources", "check", "shopify", str(sample), "--type", "orders/create"]
    assert stockwire(check) == 0
    assert json.loads(capsys.readouterr().out)["event"]["confirmed"] is False

    # This store captures payments later: an authorised order is as good as paid.
    platforms.write_text(
        platforms.read_text()
        + "[sources.shopify.mapping.kinds.order_placed]\n"
        + "confirmed = \"contains(['authorized', 'paid'], financial_status)\"\n"
    )
    assert stockwire(check) == 0
    assert json.loads(capsys.readouterr().out)["event"]["confirmed"] is True


def test_the_order_metadata_key_is_set_in_configuration(
    platforms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _body(tmp_path, "stripe", "06-payment_intent.succeeded-shop-order-key.json")
    assert stockwire(["sources", "check", "stripe", str(sample)]) == 1
    assert "data.object.metadata.order_id: required, missing or null" in capsys.readouterr().err

    platforms.write_text(platforms.read_text() + 'order_metadata_key = "shop_order"\n')
    assert stockwire(["sources", "check", "stripe", str(sample)]) == 0
    mapped = json.loads(capsys.readouterr().out)
    assert (mapped["kind"], mapped["event"]["order_key"]) == ("payment_succeeded", "5735382007871")


def test_an_order_metadata_key_on_a_profile_without_one_is_refused(
    platforms: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    platforms.write_text(
        platforms.read_text().replace('profile = "shopify"\n', 'profile = "shopify"\norder_metadata_key = "x"\n')
    )
    assert stockwire(["sources", "list"]) == 2
    assert "[sources.shopify] order_metadata_key" in capsys.readouterr().err
