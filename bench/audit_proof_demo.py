"""The offline verifier's answers, as an auditor sees them: the figures of the closing note.

Stages a small Warden (embedded: SQLite in a temporary data folder, `run_demo --setup-only`
with its track record of past tickets), takes away a full export, a one-ticket export and a
ticket's evidence JSON, makes tampered copies (a field edited, a record removed in the
middle, the last records cut off, a forged checkpoint, a wrong public key), and runs the
one-file verifier on each in an isolated Python (`python -I`, a copy of the file alone in
a folder: nothing of Warden on its path), printing what it says and its exit status.
Run: .venv/bin/python bench/audit_proof_demo.py
"""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def write_csv(path: Path, rows: list[list[str]]) -> None:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    path.write_text(text.getvalue(), encoding="utf-8")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="warden-audit-proof-"))
    env = {
        **os.environ,
        "WARDEN_DATA_DIR": str(work / "data"),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    print(f"Staging a small Warden in {work} ...", flush=True)
    manage(env, "run_demo", "--setup-only", "--hosts", "3")
    ticket = manage(
        env,
        "shell",
        "--no-imports",
        "-c",
        "from django.db.models import Count; from governance.models import AuditEvent; "
        "print(AuditEvent.objects.exclude(ticket_id='').values('ticket_id')"
        ".annotate(n=Count('pk')).order_by('-n', 'ticket_id')[0]['ticket_id'])",
    ).strip()
    files = work / "auditor"
    files.mkdir()
    full = files / "full.csv"
    one = files / f"ticket-{ticket}.csv"
    evidence = files / f"evidence-{ticket}.json"
    manage(env, "export_audit", "--format", "csv", "-o", str(full))
    manage(env, "export_audit", "--format", "csv", "--ticket", ticket, "-o", str(one))
    evidence.write_text(
        manage(
            env,
            "shell",
            "--no-imports",
            "-c",
            "import json, sys; from remediation.evidence import ticket_evidence; "
            "from remediation.models import Ticket; sys.stdout.write(json.dumps("
            f"ticket_evidence(Ticket.objects.get(ticket_id={ticket!r}))))",
        )
    )
    key = files / "warden-audit.pem"
    key.write_text(
        manage(
            env,
            "shell",
            "--no-imports",
            "-c",
            "import sys; from governance.audit.signing import public_key_pem; "
            "sys.stdout.write(public_key_pem())",
        )
    )
    shutil.copy(ROOT / "governance" / "audit" / "verifier.py", files / "verifier.py")

    rows = csv_rows(full)
    header, records, proof = rows[0], rows[1:-1], rows[-1]
    middle = len(records) // 2
    edited = [list(row) for row in records]
    edited[middle][header.index("actor")] = "user:mallory"
    cases = [("a full export", full, key)]
    cases.append(("a one-ticket export", one, key))
    cases.append(("a ticket's evidence JSON", evidence, key))
    tampered = [
        ("a field edited (the actor of a middle record)", [header, *edited, proof]),
        (
            "a record removed in the middle",
            [header, *records[:middle], *records[middle + 1 :], proof],
        ),
        ("the last three records cut off (the proof kept)", [header, *records[:-3], proof]),
        ("the last three records cut off with the proof", [header, *records[:-3]]),
    ]
    for n, (title, content) in enumerate(tampered, start=1):
        path = files / f"tampered-{n}.csv"
        write_csv(path, content)
        cases.append((title, path, key))
    forged = json.loads(proof[1])
    forged["checkpoint"]["size"] -= 3  # "the log held three records fewer"
    path = files / "tampered-checkpoint.csv"
    write_csv(path, [header, *records[:-3], [proof[0], json.dumps(forged)]])
    cases.append(("a forged checkpoint (its size lowered to match a cut)", path, key))
    other = files / "someone-else.pem"
    other.write_text(
        manage(
            env,
            "shell",
            "--no-imports",
            "-c",
            "import sys; from cryptography.hazmat.primitives.asymmetric.ed25519 import "
            "Ed25519PrivateKey; from governance.audit.signing import public_key_pem; "
            "sys.stdout.write(public_key_pem(Ed25519PrivateKey.generate().public_key()))",
        )
    )
    cases.append(("a wrong public key", full, other))

    print(f"{len(records)} records in the log; ticket {ticket}.\n")
    for title, path, public_key in cases:
        result = subprocess.run(
            [PYTHON, "-I", "verifier.py", path.name, "--public-key", public_key.name],
            cwd=files,
            capture_output=True,
            text=True,
        )
        print(f"== {title}: python -I verifier.py {path.name} --public-key {public_key.name}")
        for line in (result.stdout + result.stderr).splitlines():
            print(f"   {line}")
        print(f"   exit {result.returncode}\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
