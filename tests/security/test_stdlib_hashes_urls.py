"""Attacks through hashlib, hmac, base64/binascii and urllib.parse: their objects' internals,
host-only algorithms and functions, files, and work or memory beyond a program's limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowmetal.errors import SnapshotError
from flowmetal.machine.api import Limits
from security.attack import attempt, no_host_effect, stopped

ATTACKS = {
    # the host hash object inside ours, by name, through format fields, through type()
    "hash_internals": "import hashlib\nh = hashlib.sha256()\nprint(h._fm_h)\n",
    "hash_internals_format": 'import hashlib\nprint("{0._fm_h}".format(hashlib.sha256()))\n',
    "hash_fed_format": 'import hashlib\nprint("{0._fm_fed}".format(hashlib.sha256(b"x")))\n',
    "hash_type_new": "import hashlib\nprint(type(hashlib.sha256())('md5'))\n",
    "hash_class_dict": 'import hashlib\nprint("{0.__class__.__dict__}".format(hashlib.md5()))\n',
    "hmac_key": "import hmac\nm = hmac.new(b'k', b'm', 'sha256')\nprint(m._fm_key)\n",
    "hmac_key_format": 'import hmac\nprint("{0._fm_key}".format(hmac.new(b"k", b"m", "sha256")))\n',
    "hmac_inner": 'import hmac\nprint("{0._inner}".format(hmac.new(b"k", b"m", "sha256")))\n',
    # host-only algorithms (what OpenSSL offers differs between hosts), files
    "openssl_only_algorithm": "import hashlib\nprint(hashlib.new('md5-sha1').hexdigest())\n",
    "file_digest": "import hashlib\nprint(hashlib.file_digest)\n",
    "scrypt": "import hashlib\nprint(hashlib.scrypt(b'p', salt=b's', n=2, r=1, p=1))\n",
    "hashlib_openssl_module": "import hashlib\nprint(hashlib._hashlib)\n",
    "base64_encode_files": "import base64\nbase64.encode(1, 2)\n",
    "urllib_request": "import urllib.request\nurllib.request.urlopen('http://127.0.0.1/')\n",
    "urllib_request_attr": "import urllib\nprint(urllib.request)\n",
    "urlopen_from_parse": "from urllib.parse import urlopen\n",
    # a digestmod that is a program function is refused, never called
    "hmac_digestmod_callable": "import hmac\nhmac.new(b'k', b'm', lambda: print('called'))\n",
    "hmac_digestmod_module": "import hmac, hashlib\nhmac.new(b'k', b'm', hashlib)\n",
    # URL result tuples: their class offers no descriptors or factories
    "parse_result_descriptor": "from urllib.parse import ParseResult\nprint(ParseResult.scheme)\n",
    "parse_result_make": "from urllib.parse import ParseResult\nprint(ParseResult._make)\n",
    "parse_result_class_format": 'from urllib.parse import urlparse\nprint("{0.__class__.__mro__}".format(urlparse("x")))\n',
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_stopped(name: str, tmp_path: Path) -> None:
    with no_host_effect(tmp_path):
        outcome = attempt(ATTACKS[name])
    stopped(outcome, "AttributeError", "TypeError", "ValueError", "ImportError", "KeyError")
    assert "0x" not in outcome.output


def test_pbkdf2_rounds_are_fuel() -> None:
    # a trillion rounds would hold the node for days: the fuel runs out before any is computed
    outcome = attempt("import hashlib\nhashlib.pbkdf2_hmac('sha256', b'p', b's', 10**12)\n",
                      limits=Limits(fuel=1_000_000))
    assert outcome.error_line is not None and outcome.error_line.startswith("FuelExhausted"), outcome.error_line


@pytest.mark.parametrize("call", ["h.hexdigest(10**12)", "h.digest(10**12)",
                                  "hashlib.pbkdf2_hmac('sha256', b'p', b's', 1, dklen=10**12)"])
def test_huge_outputs_are_refused_before_allocating(call: str) -> None:
    outcome = attempt(f"import hashlib\nh = hashlib.shake_256(b'x')\n{call}\n")
    assert outcome.error_line is not None and outcome.error_line.startswith("MemoryLimitExceeded"), outcome.error_line


def test_algorithms_available_is_the_same_everywhere() -> None:
    import hashlib

    outcome = attempt("import hashlib\nprint(sorted(hashlib.algorithms_available))\n"
                      "print(hashlib.algorithms_available == hashlib.algorithms_guaranteed)\n")
    assert outcome.output == f"{sorted(hashlib.algorithms_guaranteed)}\nTrue\n"


def test_module_sets_are_not_shared_state() -> None:
    # the module's set of algorithms is shared by every program in the process: it is frozen
    outcome = attempt("import hashlib\nhashlib.algorithms_available.add('mine')\n")
    stopped(outcome, "AttributeError")


def test_a_forged_hash_state_is_refused() -> None:
    from flowmetal.machine.api import Blocked, EffectFunction, Machine, compile_program

    source = "import hashlib\nfrom flowmetal import probe\nh = hashlib.sha256(b'x')\nprobe()\nprint(h.hexdigest())\n"
    m = Machine(compile_program(source, "forge.flow"), host_module={"probe": EffectFunction("probe")})
    assert isinstance(m.run(), Blocked)
    data = m.snapshot()
    assert b"sha256" in data
    forged = data.replace(b"sha256", b"sha257")
    with pytest.raises(SnapshotError):
        Machine.restore(forged, host_module={"probe": EffectFunction("probe")})
