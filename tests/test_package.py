"Package-level checks: the README's commands, the exported package and its wheel contents."
import re, subprocess, sys, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def readme_commands():
    "The shell commands in the README's 'Set up' section, in order."
    txt = (ROOT/'README.md').read_text()
    sec = txt.split('## Set up', 1)
    assert len(sec) == 2, "README.md needs a '## Set up' section"
    body = sec[1].split('\n## ', 1)[0]
    return [l.strip() for blk in re.findall(r'```(?:sh|bash)\n(.*?)```', body, re.S) for l in blk.strip().splitlines() if l.strip()]

def test_readme_has_exactly_two_setup_commands():
    cmds = readme_commands()
    assert len(cmds) == 2, cmds
    assert 'pytest' in cmds[1], "the second README command runs the tests"

def test_ci_runs_the_readme_test_command():
    test_cmd = readme_commands()[1].split('&&')[-1].strip()
    assert test_cmd in (ROOT/'.ci'/'run').read_text(), f".ci/run must call the README's test command: {test_cmd}"

def test_package_imports_without_torchvision():
    code = "import sys; sys.modules['torchvision'] = None; import dynmoe.core; print('ok')"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and 'ok' in out.stdout, out.stderr

def test_wheel_holds_only_the_package(tmp_path):
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-w', str(tmp_path), str(ROOT)], check=True, capture_output=True)
    whl, = tmp_path.glob('dynmoe-*.whl')
    tops = {n.split('/')[0] for n in zipfile.ZipFile(whl).namelist()}
    assert {t for t in tops if not t.endswith('.dist-info')} == {'dynmoe'}, tops
