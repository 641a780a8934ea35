"""Published-weights download: checksum, cache reuse, and every way a download can fail."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.models import PUBLISHED, PublishedWeights, create, fetch_published, list_archs


@pytest.fixture(scope="module")
def payload() -> bytes:
    """A tiny test variant's state_dict, serialised as torchvision publishes its files."""
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(create("test_resnet18", num_classes=10).state_dict(), buf)
    return buf.getvalue()


def _weights(url: str, data: bytes, *, full_hash: bool = True, wrong: bool = False) -> PublishedWeights:
    digest = hashlib.sha256(data).hexdigest()
    if wrong:
        digest = "0" * 64
    return PublishedWeights(
        url=url,
        filename=url.rsplit("/", 1)[1],
        sha256=digest if full_hash else None,
        sha256_prefix=digest[:8],
        num_classes=10,
        top1=1.0,
        top5=2.0,
        source="test",
    )


def _cache_files(home):
    d = home / "weights"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@pytest.mark.parametrize("full_hash", [True, False], ids=["sha256", "prefix"])
def test_download_verifies_caches_and_loads(http_server, edgecnn_home, payload, full_hash):
    url = http_server.add("models/tiny-resnet.pth", payload)
    w = _weights(url, payload, full_hash=full_hash)
    path = fetch_published(w)
    assert path == edgecnn_home / "weights" / "tiny-resnet.pth"
    assert path.read_bytes() == payload
    model = create("test_resnet18", num_classes=10, weights=path)
    ref = torch.load(io.BytesIO(payload), weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ref.items())
    # Second call reuses the verified file: no new request.
    assert fetch_published(w) == path
    assert http_server.requests == ["/models/tiny-resnet.pth"]


def test_cached_file_with_wrong_content_is_fetched_again(http_server, edgecnn_home, payload):
    url = http_server.add("models/tiny.pth", payload)
    dest = edgecnn_home / "weights" / "tiny.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"stale")
    assert fetch_published(_weights(url, payload)).read_bytes() == payload
    assert len(http_server.requests) == 1


@pytest.mark.parametrize("full_hash", [True, False], ids=["sha256", "prefix"])
def test_wrong_checksum_leaves_nothing(http_server, edgecnn_home, payload, full_hash):
    url = http_server.add("models/tiny.pth", payload)
    with pytest.raises(EdgecnnError, match="checksum mismatch") as e:
        fetch_published(_weights(url, payload, full_hash=full_hash, wrong=True))
    assert url in str(e.value) and str(edgecnn_home / "weights" / "tiny.pth") in str(e.value)
    assert _cache_files(edgecnn_home) == []


def test_404_names_url_and_destination(http_server, edgecnn_home, payload):
    url = http_server.url("models/missing.pth")
    with pytest.raises(EdgecnnError) as e:
        fetch_published(_weights(url, payload))
    msg = str(e.value)
    assert "HTTP 404" in msg and url in msg and str(edgecnn_home / "weights" / "missing.pth") in msg
    assert "\n" not in msg
    assert _cache_files(edgecnn_home) == []


def test_truncated_download_leaves_nothing(http_server, edgecnn_home, payload):
    url = http_server.add("models/cut.pth", payload[:1000], content_length=len(payload))
    with pytest.raises(EdgecnnError, match=r"cut off|truncated") as e:
        fetch_published(_weights(url, payload))
    assert url in str(e.value)
    assert _cache_files(edgecnn_home) == []


def test_published_table_is_consistent():
    assert sorted(PUBLISHED) == sorted(list_archs())
    for arch, w in PUBLISHED.items():
        assert w.url == "https://download.pytorch.org/models/" + w.filename
        assert re.fullmatch(r"[0-9a-f]{64}", w.sha256), arch
        assert w.filename.endswith(f"-{w.sha256_prefix}.pth") and w.sha256.startswith(w.sha256_prefix)
        assert w.num_classes == 1000 and 50 < w.top1 < w.top5 < 100


def test_prefix_must_match_full_hash():
    with pytest.raises(ValueError):
        PublishedWeights(
            url="http://x/a-12345678.pth",
            filename="a-12345678.pth",
            sha256="f" * 64,
            sha256_prefix="12345678",
            num_classes=1,
            top1=0,
            top5=0,
            source="t",
        )


def test_imagenet_for_a_test_variant_is_a_clear_error():
    with pytest.raises(EdgecnnError, match="no published ImageNet weights"):
        create("test_resnet18", weights="imagenet")
