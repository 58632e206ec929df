"""The sizes table: every lesson part's sizes reachable as typed attributes, the string form
``sizes(name, mode)`` the notebooks use a thin wrapper over them."""
import dataclasses
import typing

import pytest

from helpers.checks import UnknownNameError
from helpers.modes import MODES, SIZES, ByMode, CourseSizes, FineTune, Peft, sizes


def test_each_part_is_an_attribute_and_each_mode_an_attribute_of_it():
    assert SIZES.finetune.class_ is sizes("finetune", "class")
    assert SIZES.finetune.smoke is sizes("finetune", "smoke")
    assert SIZES.peft.full is sizes("peft", "full")
    assert isinstance(SIZES.finetune.class_, FineTune) and SIZES.finetune.class_.steps == 30


@pytest.mark.parametrize("name", SIZES.names())
def test_every_part_holds_the_type_its_attribute_declares_in_every_mode(name):
    declared = typing.get_args(typing.get_type_hints(CourseSizes)[name])[0]
    for mode in MODES:
        assert type(sizes(name, mode)) is declared, (name, mode)
        assert getattr(SIZES, name).in_mode(mode) is sizes(name, mode)


def test_the_current_mode_is_the_default(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "full")
    assert SIZES.bird_counter.in_mode() is SIZES.bird_counter.full is sizes("bird_counter")
    monkeypatch.setenv("COURSE_MODE", "smoke")
    assert sizes("bird_counter") is SIZES.bird_counter.smoke


def test_an_unknown_part_or_mode_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="finetune"):
        sizes("fine_tune", "class")
    with pytest.raises(UnknownNameError, match="smoke"):
        sizes("finetune", "klass")
    with pytest.raises(UnknownNameError, match="full"):
        SIZES.peft.in_mode("class_")        # the attribute's spelling is not a mode


def test_a_part_holds_one_kind_of_sizes():
    peft, finetune = SIZES.peft.class_, SIZES.finetune.class_
    assert ByMode(smoke=peft, class_=peft, full=peft).full is peft
    with pytest.raises(TypeError, match="FineTune.*Peft"):
        ByMode(smoke=peft, class_=finetune, full=peft)


def test_the_table_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SIZES.finetune = SIZES.peft
    with pytest.raises(dataclasses.FrozenInstanceError):
        SIZES.peft.class_ = SIZES.peft.smoke
    assert isinstance(SIZES.peft.class_, Peft)
