"""The SIPp scenarios against each other (UAC against UAS, over UDP, TCP and TLS), and the
committed XML against its generator, so a scenario that broke is found before it makes
a proxy test fail for the wrong reason."""
import subprocess
import sys

from tests.support.proxy import ROOT


def test_scenarios_are_generated_from_build_scenarios():
    check = subprocess.run([sys.executable, "sipp_scenarios/build_scenarios.py", "--check"],
                           cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_client_scenario_completes_against_its_server_scenario():
    run = subprocess.run([sys.executable, "-m", "tests.support.sipp"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and ", 0 failed" in run.stdout, run.stdout[-3000:] + run.stderr
