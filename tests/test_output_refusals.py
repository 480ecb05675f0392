"""Outputs refused before any work: `demo --out` on a folder that is not its own report, `sbi_fit(save=)` on an existing folder."""
import json

from xspec_sbi import demo


def test_demo_refuses_a_folder_of_other_files_before_any_work(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert demo.main(["--out", str(out), "--quick"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "notes.txt" in err and "--overwrite" in err
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_demo_replaces_its_own_earlier_report_or_an_empty_folder(tmp_path):
    earlier = tmp_path / "demo"
    earlier.mkdir()
    (earlier / "summary.json").write_text(json.dumps({"schema": 1}))
    (earlier / "report.html").write_text(f"<title>{demo.DEMO_TITLE}</title>")
    assert demo._refuse_out(earlier, overwrite=False) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert demo._refuse_out(empty, overwrite=False) is None
    assert demo._refuse_out(tmp_path / "absent", overwrite=False) is None


def test_demo_refuses_a_report_of_another_run_and_a_file(tmp_path):
    other = tmp_path / "fit"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({"schema": 1}))
    (other / "report.html").write_text("<title>xspec_sbi result</title>")
    assert "not a demo report" in demo._refuse_out(other, overwrite=False)
    assert demo._refuse_out(other, overwrite=True) is None
    f = tmp_path / "file"
    f.write_text("x")
    assert "is a file" in demo._refuse_out(f, overwrite=False)


def test_cli_demo_refuses_a_folder_of_other_files(tmp_path):
    from xspec_sbi.cli.main import main
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert (out / "notes.txt").read_text() == "keep me"


def test_sbi_fit_refuses_an_existing_save_folder_before_any_work(tmp_path, monkeypatch):
    import pytest
    from xspec_sbi import sbi_fit
    from xspec_sbi.files import OutputExistsError
    net = tmp_path / "net"
    net.mkdir()
    (net / "weights.pt").write_bytes(b"trained earlier")
    session, _ = demo.reference_session(2000.0, seed=1)

    def no_work(*a, **k):
        raise AssertionError("sbi_fit started work before refusing save=")
    monkeypatch.setattr("xspec_sbi.api.run", no_work)
    with pytest.raises(OutputExistsError, match=str(net)):
        sbi_fit(session, save=net)
    assert (net / "weights.pt").read_bytes() == b"trained earlier"
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        sbi_fit(session, save=blocked / "net")
