"""A dormant plugin: in a pytest run that collects no claim, polyaudit builds no runtime and imports
neither torch, transformers nor scipy (a project that merely has polyaudit installed pays nothing);
once a claim is collected, the runtime exists."""

from __future__ import annotations

import pytest

HEAVY = ("torch", "transformers", "scipy")

PLAIN_TEST = f'''
import sys

def test_plain(request):
    from polyaudit.plugin.state import RUNTIME
    assert RUNTIME not in request.config.stash, "the runtime was built without a claim"
    heavy = sorted(set({HEAVY!r}) & set(sys.modules))
    assert not heavy, f"imported without a claim: {{heavy}}"
'''


def test_a_run_without_claims_builds_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain=PLAIN_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*1 passed*"])


def test_bad_polyaudit_options_are_still_refused_without_claims(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "--seed=abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--seed must be an integer*"])
