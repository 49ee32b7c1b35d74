"""A kill during the first CIFAR-10 extraction never corrupts the cache (issue 18): the split
is extracted into a temporary folder and renamed when complete; a partial folder left by an
older attrlab is extracted again; the zip is checked against SHA256SUMS where listed."""

import hashlib
import io
import zipfile

import pytest
from PIL import Image

from attrlab.data import images
from attrlab.data.images import CIFAR10_CLASSES, cifar10


def _fake_zip(root, per_class=2):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 30, 200)).save(buf, format="JPEG")
    with zipfile.ZipFile(root / "cifar10-jpeg.zip", "w") as z:
        for c in CIFAR10_CLASSES:
            for i in range(per_class):
                z.writestr(f"cifar10-jpeg/test/{c}/{i:04d}.jpg", buf.getvalue())
    return root / "cifar10-jpeg.zip"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("ATTRLAB_CACHE_DIR", str(cache))
    _fake_zip(data)
    return data, cache


def test_killed_extraction_leaves_no_partial_split(dirs, monkeypatch):
    data, cache = dirs
    real = zipfile.ZipFile.extractall

    def killed(self, path=None, members=None, pwd=None):
        real(self, path, list(members)[:7], pwd)
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "extractall", killed)
    with pytest.raises(KeyboardInterrupt):
        cifar10("test", data)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", real)
    assert not (cache / "cifar10-jpeg" / "test").exists()
    assert len(cifar10("test", data)) == 20


def test_partial_split_from_an_older_run_is_extracted_again(dirs):
    data, cache = dirs
    partial = cache / "cifar10-jpeg" / "test" / CIFAR10_CLASSES[0]
    partial.mkdir(parents=True)
    (partial / "0000.jpg").write_bytes(b"torn")
    assert len(cifar10("test", data)) == 20


def test_zip_is_checked_against_sha256sums(dirs):
    data, _ = dirs
    (data / "SHA256SUMS").write_text("0" * 64 + "  cifar10-jpeg.zip\n")
    with pytest.raises(ValueError, match="SHA-256.*SHA256SUMS"):
        cifar10("test", data)
    digest = hashlib.sha256((data / "cifar10-jpeg.zip").read_bytes()).hexdigest()
    (data / "SHA256SUMS").write_text(f"{digest}  cifar10-jpeg.zip\n")
    assert len(cifar10("test", data)) == 20
    assert images  # the module under test
