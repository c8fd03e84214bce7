from __future__ import annotations

from pathlib import Path

import pytest

from stockwire.demo.run import prepare_data_dir, sized
from stockwire.sim.config import SimConfig
from stockwire.sim.delivery import send_offsets
from stockwire.sim.generator import generate_plan


def test_a_duration_sets_the_rate_that_spreads_the_sale_over_it() -> None:
    config = sized(SimConfig(run_id="s"), orders=2000, duration_s=30.0, rate=None)
    assert config.orders == 2000
    sale = len(generate_plan(config).sale)
    assert send_offsets(sale, config.producer)[-1] == pytest.approx(30.0, rel=0.05)


def test_an_explicit_rate_wins_and_nothing_given_changes_nothing() -> None:
    assert sized(SimConfig(), orders=None, duration_s=60.0, rate=123.0).producer.rate == 123.0
    assert sized(SimConfig(), orders=None, duration_s=None, rate=None) == SimConfig()


def test_the_demo_only_empties_a_directory_it_made(tmp_path: Path) -> None:
    mine = tmp_path / "demo"
    prepare_data_dir(mine)
    (mine / "leftover").write_text("from the last run")
    prepare_data_dir(mine)
    assert not (mine / "leftover").exists()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "precious").write_text("keep")
    with pytest.raises(SystemExit, match="not empty"):
        prepare_data_dir(theirs)
    assert (theirs / "precious").read_text() == "keep"
