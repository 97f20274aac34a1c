import numpy as np
import pytest

from cadence import schedules as S
from cadence.errors import SpecError

from conftest import ALL_SPECS, TOTAL


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_every_spec_round_trips(spec):
    s = S.parse(spec)
    again = S.parse(s.spec())
    assert again == s and np.array_equal(again.values(TOTAL), s.values(TOTAL))


def test_positional_and_negative_literals():
    assert S.parse("cosine(1.0, 0.1, 5)") == S.cosine(peak=1.0, final=0.1, warmup=5)
    assert S.parse("power(b=-0.5, per='st')").b == -0.5


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("__import__('os').system('echo pwned')", "only schedule names may be called"),
        ("cosine(peak=__import__('os'))", "unknown schedule family '__import__'"),
        ("cosine(peak=x)", "may not name variables"),
        ("cosine(peak=nan)", "may not name variables"),
        ("cosine(peak=(lambda: 1)())", "only schedule names may be called"),
        ("cosine(peak=[1][0])", "Subscript"),
        ("cosine(peak=1+2)", "BinOp"),
        ("cosine(**{'peak': 1})", "'\\*\\*' is not allowed"),
        ("cosine.__class__", "must be a call"),
        ("cosine(", "cannot parse"),
        ("", "non-empty string"),
        ("cosin(peak=1)", "did you mean 'cosine'"),
        ("cosine(peek=1)", "unexpected keyword argument 'peek'; parameters: peak, final, warmup"),
        ("cosine(1, 2, 3, 4)", "too many positional"),
    ],
)
def test_specs_are_parsed_never_evaluated(spec, fragment):
    with pytest.raises(SpecError, match=fragment):
        S.parse(spec)
