import pytest

from fuzz.harness import Corpus, warm_up_library, warm_up_plans


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A real run, a stopped run, a comparison, a curve and two laws, built once per worker."""
    c = Corpus(tmp_path_factory.mktemp("fuzz-corpus"))
    c.warm_up()
    return c


@pytest.fixture(scope="session")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-cases")


@pytest.fixture(scope="session", autouse=True)
def _warm(tmp_path_factory):
    """Imports and torch's first optimizer cost seconds once; the 2 s limit is for the cases."""
    warm_up_library(tmp_path_factory.mktemp("fuzz-warm"))


@pytest.fixture(scope="session")
def plan_warm(tmp_path_factory):
    """Plans' first-call costs (controllers, yaml, a plot, a logreg run) outside the limits."""
    warm_up_plans(tmp_path_factory.mktemp("fuzz-plan-warm"))
