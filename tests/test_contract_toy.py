"""The family contract suite, run against the toy test family (proves the suite itself)."""

from diffsynth.testing.contract import FamilyContract


class TestToyFamilyContract(FamilyContract):
    family = "toy"
    preset = "tiny"
