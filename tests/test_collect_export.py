"""volna keygen, export and status: what is exported is exactly what was submitted."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from postgres import fresh_database, postgres_url  # noqa: F401  (postgres_url: a fixture)
from volna import Questionnaire
from volna.collect import crypto
from volna.collect.export import ExportError, export_responses
from volna.collect.store import Store
from volna.examples import example_path
from volna.examples.generate_okrussians import write_example
from volna.io import read

PASSPHRASE = "export test passphrase"
QUESTIONNAIRE = example_path("okrussians", "questionnaire.yaml")
DAYS = ["2024-03-01", "2024-03-02", "2024-03-04"]
FLAG_SETS = [[], ["too_fast"], [], ["honeypot", "no_proof_of_work"]]
N = 48


def volna(*args, passphrase: str | None = PASSPHRASE) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VOLNA_KEY_PASSPHRASE"}
    if passphrase is not None:
        env["VOLNA_KEY_PASSPHRASE"] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "volna.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    private_pem, public_text = crypto.generate_keypair(PASSPHRASE)
    (folder / "volna-private.pem").write_bytes(private_pem)
    (folder / "volna-public.key").write_bytes(public_text)
    return folder / "volna-private.pem", crypto.load_public_key(folder / "volna-public.key")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The example's rows as text, as `volna example` writes them: the submitted answers."""
    path = tmp_path_factory.mktemp("example") / "data.csv"
    write_example(path, n=N, seed=5)
    table = pl.read_csv(path, infer_schema=False).fill_null("")
    return path, table


def submitted(table: pl.DataFrame) -> list[dict]:
    """One submission per example row: answers (no paradata) and the server's paradata."""
    q = Questionnaire.load(QUESTIONNAIRE)
    paradata = {p.name for p in q.paradata}
    out = []
    for i, row in enumerate(table.iter_rows(named=True)):
        answers = {k: v for k, v in row.items() if k not in paradata}
        out.append(
            {
                "answers": answers,
                "lang": "ru" if i % 2 else "en",
                "duration": round(float(row["duration_sec"]) / 10) * 10,
                "flags": FLAG_SETS[i % len(FLAG_SETS)],
                "day": DAYS[i % len(DAYS)],
            }
        )
    return out


def fill(store: Store, public, submissions: list[dict]) -> None:
    store.set_meta("questionnaire", QUESTIONNAIRE.read_bytes())
    for i, s in enumerate(submissions):
        answers = {"v": 1, "lang": s["lang"], "answers": s["answers"]}
        paradata = {"v": 1, "mode": "js", "duration_sec": s["duration"], "flags": s["flags"]}
        assert store.add(
            crypto.seal(public, json.dumps(answers, ensure_ascii=False).encode()),
            crypto.seal(public, json.dumps(paradata).encode()),
            f"nonce {i}".encode(),
            day=s["day"],
        )


def expected_rows(submissions: list[dict]) -> list[tuple]:
    """What the exported CSV must hold for each submission, as text, respondent id aside."""
    return [
        (
            f"{s['duration']}.0",  # canonical CSV writes durations as decimals
            *s["answers"].values(),
            s["day"],
            " ".join(s["flags"]),
        )
        for s in submissions
    ]


def test_export_returns_exactly_what_was_submitted(tmp_path, keys, example):
    private_key, public = keys
    example_csv, table = example
    submissions = submitted(table)
    url = f"sqlite:///{tmp_path / 'responses.db'}"
    with Store.open(url) as store:
        fill(store, public, submissions)
        # the order export must follow: the store's random ids
        private = crypto.load_private_key(private_key, PASSPHRASE)
        order = [
            json.loads(crypto.open_sealed(private, s.answers))["answers"]
            for s in store.submissions()
        ]

    done = volna("export", "--db", url, "--key", private_key, "-o", tmp_path / "out.csv")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert f"{N} submissions -> {tmp_path / 'out.csv'}; no problems" in done.stdout

    out = pl.read_csv(tmp_path / "out.csv", infer_schema=False).fill_null("")
    answer_columns = [c for c in table.columns if c not in ("respondent_id", "duration_sec")]
    assert out.columns == [
        "respondent_id",
        "duration_sec",
        *answer_columns,
        "submitted_day",
        "screening_flags",
    ]
    assert out["respondent_id"].to_list() == [f"r{i:06d}" for i in range(1, N + 1)]
    rows = [row[1:] for row in out.rows()]
    assert sorted(rows) == sorted(expected_rows(submissions))  # every column, every value
    assert [dict(zip(answer_columns, r[1:-2], strict=True)) for r in rows] == order
    assert out.filter(pl.col("screening_flags") == "honeypot no_proof_of_work").height == N // 4
    # the answers match the generator's own file, cell for cell
    original = pl.read_csv(example_csv, infer_schema=False).fill_null("")
    assert sorted(out.select(answer_columns).rows()) == sorted(
        original.select(answer_columns).rows()
    )

    done = volna("export", "--db", url, "--key", private_key, "-o", tmp_path / "out.parquet")
    assert done.returncode == 0, done.stderr
    parquet = pl.read_parquet(tmp_path / "out.parquet")
    q = Questionnaire.load(QUESTIONNAIRE)
    assert parquet.equals(read(tmp_path / "out.csv", q, unknown_columns="keep"))
    assert parquet.schema["age"] == pl.Int64 and parquet.schema["fears/none"] == pl.Boolean
    assert parquet.schema["duration_sec"] == pl.Float64


def test_export_from_postgresql(postgres_url, tmp_path, keys, example):  # noqa: F811
    private_key, public = keys
    submissions = submitted(example[1])[:12]
    with Store.open(fresh_database(postgres_url)) as store:
        fill(store, public, submissions)
        private = crypto.load_private_key(private_key, PASSPHRASE)
        q = Questionnaire.loads(store.get_meta("questionnaire").decode())
        result = export_responses(store, private, q, tmp_path / "out.csv")
    assert result.rows == 12 and result.report.ok and not result.skipped
    out = pl.read_csv(tmp_path / "out.csv", infer_schema=False).fill_null("")
    assert sorted(row[1:] for row in out.rows()) == sorted(expected_rows(submissions))


def test_status_prints_counts_only(tmp_path, keys):
    _, public = keys
    url = f"sqlite:///{tmp_path / 'responses.db'}"
    with Store.open(url) as store:
        for i, day in enumerate(["2024-03-02", "2024-03-01", "2024-03-02", "2024-03-02"]):
            store.add(crypto.seal(public, b"{}"), crypto.seal(public, b"{}"), bytes([i]), day=day)
    done = volna("status", "--db", url, passphrase=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{url}: 4 submissions",
        "2024-03-01  1",
        "2024-03-02  3",
    ]


def test_status_of_a_missing_database_creates_nothing(tmp_path):
    line = one_line_error(volna("status", "--db", f"sqlite:///{tmp_path / 'typo.db'}"))
    assert line.endswith("typo.db: no such database file")
    assert not (tmp_path / "typo.db").exists()


# -- what cannot be exported ---------------------------------------------------------


@pytest.fixture
def small_store(tmp_path, keys, example):
    _, public = keys
    url = f"sqlite:///{tmp_path / 'responses.db'}"
    with Store.open(url) as store:
        fill(store, public, submitted(example[1])[:3])
    return url


def add_raw(url: str, answers: bytes, paradata: bytes) -> str:
    with Store.open(url) as store:
        before = {s.id for s in store.submissions()}
        store.add(answers, paradata, os.urandom(16))
        (new,) = {s.id for s in store.submissions()} - before
    return new


def test_wrong_passphrase_is_one_line(tmp_path, keys, small_store):
    private_key, _ = keys
    args = ("export", "--db", small_store, "--key", private_key, "-o", tmp_path / "o.csv")
    line = one_line_error(volna(*args, passphrase="not it"))
    assert line == f"volna: error: {private_key}: wrong passphrase for this private key"
    line = one_line_error(volna(*args, passphrase=None))  # no terminal to ask on
    assert "set VOLNA_KEY_PASSPHRASE" in line
    assert not (tmp_path / "o.csv").exists()


def test_wrong_key_names_the_submission_and_can_be_skipped(tmp_path, keys, small_store):
    private_key, public = keys
    other = ec_public()
    bad = add_raw(small_store, crypto.seal(other, b"{}"), crypto.seal(public, b"{}"))
    args = ("export", "--db", small_store, "--key", private_key, "-o", tmp_path / "o.csv")
    line = one_line_error(volna(*args))
    assert f"submission {bad} " in line and "sealed to another key" in line
    assert "--skip-unreadable" in line
    done = volna(*args, "--skip-unreadable")
    assert done.returncode == 0, done.stderr
    assert f"skipped submission {bad} " in done.stderr
    assert "3 submissions" in done.stdout and "1 unreadable skipped" in done.stdout
    assert pl.read_csv(tmp_path / "o.csv", infer_schema=False).height == 3


def ec_public():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).public_key()


def test_tampered_envelope_names_the_submission(tmp_path, keys, small_store):
    private_key, _ = keys
    engine = sa.create_engine(small_store)
    with engine.begin() as conn:
        victim, answers = conn.execute(
            sa.text("SELECT id, answers FROM volna_submissions ORDER BY id LIMIT 1")
        ).one()
        altered = bytearray(answers)
        altered[500] ^= 1
        conn.execute(
            sa.text("UPDATE volna_submissions SET answers = :a WHERE id = :id"),
            {"a": bytes(altered), "id": victim},
        )
    engine.dispose()
    line = one_line_error(
        volna("export", "--db", small_store, "--key", private_key, "-o", tmp_path / "o.csv")
    )
    assert f"submission {victim} " in line and "altered or damaged" in line


@pytest.mark.parametrize(
    ("answers", "paradata", "message"),
    [
        (b"\xff\xfe not json", b'{"v": 1}', "answers do not decrypt to volna's JSON"),
        (b'{"v": 2, "answers": {}}', b'{"v": 1}', "answers are not volna's JSON version 1"),
        (b'{"v": 1, "answers": {"age": 34}}', b'{"v": 1}', "not a mapping of column names"),
        (b'{"v": 1, "answers": {}}', b'{"v": 1, "duration_sec": "9"}', "duration_sec '9'"),
        (b'{"v": 1, "answers": {}}', b'{"v": 1, "flags": "x"}', "flags 'x' are not a list"),
    ],
)
def test_malformed_plaintext_names_the_submission(keys, small_store, answers, paradata, message):
    private_key, public = keys
    bad = add_raw(small_store, crypto.seal(public, answers), crypto.seal(public, paradata))
    private = crypto.load_private_key(private_key, PASSPHRASE)
    q = Questionnaire.load(QUESTIONNAIRE)
    with Store.open(small_store) as store, pytest.raises(ExportError) as info:
        export_responses(store, private, q, Path(small_store[10:]).with_suffix(".csv"))
    assert str(info.value).startswith(f"submission {bad} (")
    assert message in str(info.value)


def test_hostile_answers_are_reported_not_fixed(tmp_path, keys, example):
    """A client can seal anything: unknown codes and columns, markup, paradata names."""
    private_key, public = keys
    url = f"sqlite:///{tmp_path / 'responses.db'}"
    answers = dict(submitted(example[1])[0]["answers"])
    answers["destination"] = "<script>alert(1)</script>"
    answers["age"] = "old"
    answers["injected"] = "x"
    answers["respondent_id"] = "spoofed"
    with Store.open(url) as store:
        fill(store, public, [{"answers": answers, "lang": "en", "duration": 30, "flags": [],
                              "day": "2024-01-01"}])  # fmt: skip
    done = volna("export", "--db", url, "--key", private_key, "-o", tmp_path / "o.csv")
    assert done.returncode == 0, done.stderr
    assert "column destination: '<script>alert(1)</script>'" in done.stdout
    assert "[unknown_code]" in done.stdout and "column age: 'old'" in done.stdout
    assert "column 'injected' is not an answer column of the questionnaire; left out" in (
        done.stderr
    )
    assert "column 'respondent_id' is not an answer column" in done.stderr
    out = pl.read_csv(tmp_path / "o.csv", infer_schema=False)
    assert out["respondent_id"].to_list() == ["r000001"]
    assert "injected" not in out.columns


# -- keygen ------------------------------------------------------------------------------


def test_keygen_writes_a_protected_pair(tmp_path):
    done = volna("keygen", "-o", tmp_path)
    assert done.returncode == 0, done.stderr
    private, public = tmp_path / "volna-private.pem", tmp_path / "volna-public.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = crypto.load_public_key(public)
    assert f"key id {crypto.key_id(key).hex()}" in done.stdout
    assert crypto.load_private_key(private, PASSPHRASE).public_key() == key
    assert PASSPHRASE not in private.read_text() + done.stdout + done.stderr

    first = private.read_bytes()
    line = one_line_error(volna("keygen", "-o", tmp_path))
    assert line == f"volna: error: {private}: already exists; keep it, or replace it with --force"
    assert private.read_bytes() == first
    assert volna("keygen", "-o", tmp_path, "--force").returncode == 0
    assert private.read_bytes() != first
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_keygen_makes_its_folder_private(tmp_path):
    folder = tmp_path / "study" / "keys"
    done = volna("keygen", "-o", folder)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder / "volna-private.pem").exists() and (folder / "volna-public.key").exists()
    # a file named explicitly must have its folder already
    line = one_line_error(volna("keygen", "--private", tmp_path / "nowhere" / "k.pem"))
    assert "the folder" in line and "does not exist" in line


def test_keygen_paths_and_empty_passphrase(tmp_path):
    private, public = tmp_path / "a.pem", tmp_path / "b.key"
    line = one_line_error(volna("keygen", "--private", private, "--public", public, passphrase=""))
    assert "passphrase is empty" in line
    assert not private.exists() and not public.exists()
    done = volna("keygen", "--private", private, "--public", public)
    assert done.returncode == 0, done.stderr
    assert crypto.load_private_key(private, PASSPHRASE).public_key() == crypto.load_public_key(
        public
    )
