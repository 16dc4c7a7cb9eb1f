"""syncopt bundle: round trip through verify, tampering and unsafe archives refused."""

from __future__ import annotations

import json
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from syncopt.deploy.bundle import BundleError, make_bundle, safe_extract, verify_bundle
from syncopt.cli import main


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    pytest.importorskip("onnx2tf")
    from syncopt.export import export
    from syncopt.models.registry import create

    work = tmp_path_factory.mktemp("bundle")
    art = export(create("mobile_2d", "tiny"), "tflite", work / "art", frames=7)
    return make_bundle(art.path, "android", work / "mobile_2d.zip", parity_clips=2)


def _rezip(src: Path, dest: Path, edit) -> Path:
    """Copy bundle ``src`` to ``dest`` with ``edit(name, data) -> data`` applied to every entry."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, edit(name, zin.read(name)))
    return dest


@pytest.mark.slow
def test_bundle_round_trips_through_verify(bundle, tmp_path, capsys):
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        readme = zf.read("README.md").decode()
    model = "models/mobile_2d_tiny_fp32_T7.tflite"
    assert names == {"manifest.json", "README.md", model}
    assert set(manifest["files"]) == {"README.md", model}
    from syncopt.models.registry import create

    crop = create("mobile_2d", "tiny").spec.preprocessing.crop_size
    assert manifest["preprocessing"]["crop_size"] == crop and manifest["preprocessing"]["mfcc"]["nfft"] == 512
    assert manifest["offset_range"]["min"] == -15 and "audio leads" in manifest["offset_range"]["meaning"]
    assert manifest["models"][0]["inputs"][0]["layout"] == "NTHWC"
    assert manifest["parity"][0]["passed"] and manifest["parity"][0]["outputs"]
    assert f"| `video` | input | (1, 7, {crop}, {crop}, 3) | NTHWC |" in readme
    report = verify_bundle(bundle)
    assert report.files_checked == 2 and "ran on a 7-frame synthetic clip" in report.runs[0]
    with pytest.raises(SystemExit) as exc:
        main(["bundle", "verify", str(bundle)])
    assert exc.value.code in (0, None) and "ok" in capsys.readouterr().out
    # a folder bundle verifies the same way
    folder = safe_extract(bundle, tmp_path / "unpacked")
    assert verify_bundle(folder).files_checked == 2


@pytest.mark.slow
def test_tampered_model_fails_verify(bundle, tmp_path, capsys):
    def flip(name: str, data: bytes) -> bytes:
        return data[:-100] + bytes([data[-100] ^ 1]) + data[-99:] if name.endswith(".tflite") else data

    bad = _rezip(bundle, tmp_path / "bad.zip", flip)
    with pytest.raises(BundleError, match="sha256 of 'models/mobile_2d_tiny_fp32_T7.tflite' does not match"):
        verify_bundle(bad)
    with pytest.raises(SystemExit) as exc:
        main(["bundle", "verify", str(bad)])
    assert exc.value.code == BundleError.exit_code
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_manifest_schema_and_parity_are_checked(bundle, tmp_path):
    def drop(key: str):
        def edit(name: str, data: bytes) -> bytes:
            if name != "manifest.json":
                return data
            m = json.loads(data)
            if key == "parity":
                m["parity"] = []
            else:
                del m[key]
            return json.dumps(m).encode()
        return edit

    with pytest.raises(BundleError, match=r"schema \(offset_range: Field required\)"):
        verify_bundle(_rezip(bundle, tmp_path / "a.zip", drop("offset_range")))
    with pytest.raises(BundleError, match="no parity figures"):
        verify_bundle(_rezip(bundle, tmp_path / "b.zip", drop("parity")))


@pytest.mark.slow
def test_unlisted_file_fails_verify(bundle, tmp_path):
    extra = tmp_path / "extra.zip"
    shutil.copy(bundle, extra)
    with zipfile.ZipFile(extra, "a") as zf:
        zf.writestr("models/other.tflite", b"not listed")
    with pytest.raises(BundleError, match="'models/other.tflite' is not listed"):
        verify_bundle(extra)


@pytest.mark.parametrize("entry,why", [("../escape.txt", "'..' leaves the bundle"),
                                       ("models/../../escape.txt", "'..' leaves the bundle"),
                                       ("/tmp/escape.txt", "absolute path"),
                                       ("link", "symbolic link")])
def test_unsafe_archives_are_refused_before_extraction(tmp_path, entry, why):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.json", "{}")
        info = zipfile.ZipInfo(entry)
        if entry == "link":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        else:
            zf.writestr(info, "payload")
    dest = tmp_path / "out" / "inner"
    with pytest.raises(BundleError, match=why):
        verify_bundle(archive)
    with pytest.raises(BundleError, match=why):
        safe_extract(archive, dest)
    assert not dest.exists() and not (tmp_path / "out" / "escape.txt").exists()


def test_not_a_zip_is_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(SystemExit) as exc:
        main(["bundle", "verify", str(junk)])
    assert exc.value.code == BundleError.exit_code
    assert capsys.readouterr().err.startswith("error: junk.zip is not a readable zip")


def test_artifact_of_the_wrong_format_for_the_target(tmp_path):
    from syncopt.core.errors import UsageError
    from syncopt.export import export
    from syncopt.models.registry import create

    art = export(create("mobile_2d", "tiny"), "onnx", tmp_path)
    with pytest.raises(UsageError, match="onnx artifact"):
        make_bundle(art.path, "android", tmp_path / "b.zip")
