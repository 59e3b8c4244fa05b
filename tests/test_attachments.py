"""Attachments: listed, downloaded, uploaded and deleted, byte for byte, on both backends."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from archibald import (
    APIKeyAuth,
    ArchieClient,
    AttachmentEditResult,
    AttachmentInfo,
    FeatureLayer,
    InvalidParameterError,
    LayerCapabilityError,
    NetworkError,
    NotFoundError,
    ServiceError,
    TokenPlacement,
    UserTokenAuth,
)
from archibald.testing import FakeArcGIS

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "wonderland"
EVERY_BYTE = bytes(range(256)) * 4
LAYER = "/arcgis/rest/services/Parcels/FeatureServer/0"


@pytest.fixture
def fake() -> FakeArcGIS:
    fake = FakeArcGIS()
    fake.add_user(USER, PASSWORD)
    fake.add_feature_layer("Parcels", count=20, secured=True, has_attachments=True)
    return fake


class Recorder(httpx.AsyncBaseTransport):
    """The emulator's transport, keeping every request it was sent."""

    def __init__(self, fake: FakeArcGIS) -> None:
        self.inner = fake.transport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


def client_for(fake: FakeArcGIS, **kwargs: Any) -> ArchieClient:
    auth = UserTokenAuth(USER, PASSWORD, fake.portal_url, http_client=fake.client())
    kwargs.setdefault("transport", fake.transport())
    return ArchieClient(fake.services_url, auth, **kwargs)


@pytest.fixture(params=[True, False], ids=["queryAttachments", "per-feature"])
def query_attachments(request: pytest.FixtureRequest, fake: FakeArcGIS) -> bool:
    """Layers that list attachments with queryAttachments, and layers that cannot."""
    fake.layer("Parcels").supports_query_attachments = bool(request.param)
    return bool(request.param)


async def test_every_byte_value_round_trips(fake: FakeArcGIS, query_attachments: bool) -> None:
    """A file holding every byte value comes back exactly, listed with its name and size."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        added = await layer.add_attachment(3, EVERY_BYTE, name="all.bin", keywords="raw")
        [info] = await layer.attachments(3)
        content = await layer.download_attachment(3, info.id)
    assert EVERY_BYTE == content
    assert (added.attachment_id, True) == (info.id, added.success)
    expected = ("all.bin", "application/octet-stream", len(EVERY_BYTE), 3, "raw")
    assert expected == (
        info.name,
        info.content_type,
        info.size,
        info.parent_object_id,
        info.keywords,
    )


@pytest.mark.real_clock  # files are read and written in worker threads
async def test_a_large_file_from_a_path_to_a_path(fake: FakeArcGIS, tmp_path: Path) -> None:
    """Three megabytes uploaded from a file and downloaded to a file are the same bytes,
    and the download leaves no temporary file behind."""
    data = random.Random(7).randbytes(3 * 1024 * 1024 + 17)
    source = tmp_path / "scan.tif"
    source.write_bytes(data)
    dest = tmp_path / "out" / "copy.tif"
    dest.parent.mkdir()
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        added = await layer.add_attachment(5, source)
        assert added.attachment_id is not None
        written = await layer.download_attachment(5, added.attachment_id, dest)
        [info] = await layer.attachments(5)
    assert (dest, data) == (written, dest.read_bytes())
    assert ["copy.tif"] == os.listdir(dest.parent)
    assert ("scan.tif", "image/tiff") == (info.name, info.content_type)


async def test_many_features_at_once(fake: FakeArcGIS, query_attachments: bool) -> None:
    """attachments(object_ids=...) maps every id asked for to its attachments, in few
    requests where the layer offers queryAttachments."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        for oid in (2, 4, 4):
            await layer.add_attachment(oid, f"note {oid}".encode(), name=f"n{oid}.txt")
        fake.reset_statistics()
        found = await layer.attachments(object_ids=[1, 2, 3, 4])
    assert {1: [], 2: ["n2.txt"], 3: [], 4: ["n4.txt", "n4.txt"]} == {
        oid: [a.name for a in infos] for oid, infos in found.items()
    }
    assert (1 if query_attachments else 4) == fake.statistics().requests["attachments"]


async def test_a_reply_cut_at_the_record_limit_is_completed(fake: FakeArcGIS) -> None:
    """queryAttachments answers at most maxRecordCount attachments; the rest are still
    listed (halves, then the feature's own list)."""
    layer_data = fake.layer("Parcels")
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        for oid in (1, 1, 1, 1, 2, 3):
            await layer.add_attachment(oid, b"x", name=f"{oid}.txt")
        layer_data.max_record_count = 3
        found = await layer.attachments(object_ids=[1, 2, 3])
    assert {1: 4, 2: 1, 3: 1} == {oid: len(infos) for oid, infos in found.items()}


async def test_update_replaces_the_file_and_keeps_the_id(fake: FakeArcGIS) -> None:
    """updateAttachment puts new bytes, name and type under the same attachment id."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        added = await layer.add_attachment(1, b"old", name="a.txt")
        assert added.attachment_id is not None
        updated = await layer.update_attachment(
            1, added.attachment_id, b"\x00new\xff", name="b.png"
        )
        [info] = await layer.attachments(1)
        content = await layer.download_attachment(1, added.attachment_id)
    assert (added.attachment_id, True) == (updated.attachment_id, updated.success)
    assert ("b.png", "image/png", b"\x00new\xff") == (info.name, info.content_type, content)


async def test_updating_a_missing_attachment_fails_clearly(fake: FakeArcGIS) -> None:
    """An update the server did not make raises, with the server's code and reason."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        with pytest.raises(ServiceError) as caught:
            await layer.update_attachment(1, 99, b"x", name="x.txt")
    assert 1009 == caught.value.code
    assert "Attachment 99 does not exist" in str(caught.value)


async def test_delete_reports_each_attachment(fake: FakeArcGIS) -> None:
    """deleteAttachments answers one result per id; a missing one fails alone."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        first = await layer.add_attachment(1, b"a", name="a.txt")
        second = await layer.add_attachment(1, b"b", name="b.txt")
        assert first.attachment_id is not None
        results = await layer.delete_attachments(1, [first.attachment_id, 77])
        left = await layer.attachments(1)
    assert [
        AttachmentEditResult(
            attachment_id=first.attachment_id, success=True, global_id=first.global_id
        ),
        AttachmentEditResult(
            attachment_id=77,
            success=False,
            error_code=1010,
            error_description="Attachment 77 does not exist.",
        ),
    ] == results
    assert [second.attachment_id] == [a.id for a in left]


async def test_a_layer_without_attachments_is_refused_before_any_request(
    fake: FakeArcGIS,
) -> None:
    """Without hasAttachments, every call fails at once, naming the layer."""
    fake.layer("Parcels").has_attachments = False
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        await layer.info()
        fake.reset_statistics()
        for call in (
            layer.attachments(1),
            layer.download_attachment(1, 1),
            layer.add_attachment(1, b"x", name="x.txt"),
            layer.delete_attachments(1, [1]),
        ):
            with pytest.raises(LayerCapabilityError, match="has no attachments"):
                await call
    assert 0 == fake.statistics().total_requests


async def test_editing_needs_the_capabilities(fake: FakeArcGIS) -> None:
    """A read-only layer lists and serves attachments but refuses to change them."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        added = await layer.add_attachment(1, b"kept", name="k.txt")
        assert added.attachment_id is not None
        fake.layer("Parcels").capabilities = "Query"
        with pytest.raises(ServiceError, match="needs the Create or Update capability"):
            await layer.add_attachment(1, b"x", name="x.txt")
        with pytest.raises(ServiceError, match="needs the Update capability"):
            await layer.delete_attachments(1, [added.attachment_id])
        fake.layer("Parcels").capabilities = "Query,Create"  # adding needs Create or Update
        await layer.add_attachment(1, b"y", name="y.txt")
        with pytest.raises(ServiceError, match="needs the Update capability"):
            await layer.update_attachment(1, added.attachment_id, b"z", name="z.txt")
        kept = await layer.download_attachment(1, added.attachment_id)
    assert b"kept" == kept


async def test_uploads_over_the_limit_are_refused(fake: FakeArcGIS) -> None:
    """A file bigger than the server's upload limit is refused and not stored."""
    fake.layer("Parcels").max_upload_bytes = 1000
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        with pytest.raises(ServiceError, match="maximum upload size"):
            await layer.add_attachment(1, bytes(1001), name="big.bin")
        await layer.add_attachment(1, bytes(1000), name="fits.bin")
        names = [a.name for a in await layer.attachments(1)]
    assert ["fits.bin"] == names


@pytest.mark.real_clock  # files are read and written in worker threads
async def test_missing_features_and_attachments(fake: FakeArcGIS, tmp_path: Path) -> None:
    """A feature or attachment that does not exist is a NotFoundError, and a failed
    download leaves the destination untouched."""
    fake.layer("Parcels").supports_query_attachments = False
    dest = tmp_path / "photo.jpg"
    dest.write_bytes(b"the user's file")
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        with pytest.raises(NotFoundError, match="Feature 999 does not exist"):
            await layer.add_attachment(999, b"x", name="x.txt")
        with pytest.raises(NotFoundError):
            await layer.attachments(999)
        with pytest.raises(NotFoundError, match="Attachment 5 not found"):
            await layer.download_attachment(1, 5, dest)
    assert b"the user's file" == dest.read_bytes()
    assert ["photo.jpg"] == os.listdir(tmp_path)


async def test_json_and_text_files_are_files(fake: FakeArcGIS) -> None:
    """An attachment that is JSON or text comes back as its bytes, not decoded."""
    document = json.dumps({"features": [1, 2]}).encode()
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        a = await layer.add_attachment(1, document, name="d.json")
        b = await layer.add_attachment(1, b"not json {", name="t.txt")
        assert a.attachment_id is not None
        assert b.attachment_id is not None
        contents = [
            await layer.download_attachment(1, a.attachment_id),
            await layer.download_attachment(1, b.attachment_id),
        ]
    assert [document, b"not json {"] == contents


@pytest.mark.real_clock  # files are read and written in worker threads
async def test_an_error_envelope_is_never_written_to_the_file(tmp_path: Path) -> None:
    """A download answered with HTTP 200 and an ArcGIS error raises it; no file is made."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/0"):
            return httpx.Response(200, json={"objectIdField": "OID", "hasAttachments": True})
        error = {"error": {"code": 500, "message": "Unable to read attachment.", "details": []}}
        return httpx.Response(200, json=error, headers={"content-type": "text/plain"})

    dest = tmp_path / "a.bin"
    transport = httpx.MockTransport(answer)
    async with ArchieClient("https://h/arcgis/rest/services", transport=transport) as client:
        layer = FeatureLayer(client, "S", 0)
        with pytest.raises(ServiceError, match="Unable to read attachment"):
            await layer.download_attachment(1, 1, dest)
    assert [] == os.listdir(tmp_path)


async def test_a_redirect_to_storage_gets_the_file_but_not_the_token() -> None:
    """A download redirected to another origin (where hosted layers keep their files)
    follows it, without the token."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "blob.example.net":
            return httpx.Response(200, content=EVERY_BYTE, headers={"content-type": "image/jpeg"})
        if request.url.path.endswith("/0"):
            return httpx.Response(200, json={"objectIdField": "OID", "hasAttachments": True})
        return httpx.Response(302, headers={"location": "https://blob.example.net/f?sig=1"})

    transport = httpx.MockTransport(answer)
    auth = APIKeyAuth("the-key")
    async with ArchieClient("https://h/arcgis/rest/services", auth, transport=transport) as client:
        content = await FeatureLayer(client, "S", 0).download_attachment(1, 1)
    assert EVERY_BYTE == content
    assert ["Bearer the-key", None] == [r.headers.get("authorization") for r in seen[1:]]


async def test_an_error_status_on_a_download_is_typed(fake: FakeArcGIS) -> None:
    """Behind a proxy that sets the HTTP status, a missing attachment is still NotFoundError."""
    fake.error_style = "http"
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        with pytest.raises(NotFoundError, match="Attachment 3 not found"):
            await layer.download_attachment(1, 3)


@pytest.mark.parametrize("placement", list(TokenPlacement))
async def test_the_token_never_travels_in_a_url(
    fake: FakeArcGIS, placement: TokenPlacement
) -> None:
    """On a secured layer, uploads and downloads carry the token, but never in a URL."""
    recorder = Recorder(fake)
    auth = UserTokenAuth(
        USER, PASSWORD, fake.portal_url, http_client=fake.client(), placement=placement
    )
    async with ArchieClient(fake.services_url, auth, transport=recorder) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        added = await layer.add_attachment(1, EVERY_BYTE, name="a.bin")
        assert added.attachment_id is not None
        content = await layer.download_attachment(1, added.attachment_id)
        await layer.delete_attachments(1, [added.attachment_id])
    tokens = fake.issued_tokens()
    assert EVERY_BYTE == content
    assert [] == [str(r.url) for r in recorder.requests if any(t in str(r.url) for t in tokens)]


async def test_an_upload_is_not_sent_twice(fake: FakeArcGIS) -> None:
    """An upload whose connection broke is not repeated: it may have been stored."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        await layer.info()
        fake.reset_statistics()
        fake.faults.drop_next("attachments")
        with pytest.raises(NetworkError):
            await layer.add_attachment(1, b"once", name="once.txt")
    assert 1 == fake.statistics().requests["attachments"]


async def test_deleting_a_feature_deletes_its_attachments(fake: FakeArcGIS) -> None:
    """applyEdits deletes take the feature's attachments with them."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        await layer.add_attachment(4, b"gone", name="g.txt")
        await layer.add_attachment(5, b"kept", name="k.txt")
        await client.post_json(f"{LAYER.split('services/')[1]}/applyEdits", data={"deletes": [4]})
        found = await layer.attachments(object_ids=[4, 5])
    assert {4: [], 5: ["k.txt"]} == {oid: [a.name for a in i] for oid, i in found.items()}
    assert [] == fake.layer("Parcels").attachments.of(4)


@pytest.mark.real_clock  # files are read and written in worker threads
async def test_arguments_are_checked_before_sending(fake: FakeArcGIS, tmp_path: Path) -> None:
    """Bad arguments fail with InvalidParameterError, saying what to give."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        fake.reset_statistics()
        with pytest.raises(InvalidParameterError, match="name= is needed"):
            await layer.add_attachment(1, b"x")
        with pytest.raises(InvalidParameterError, match="no file to upload"):
            await layer.add_attachment(1, tmp_path / "absent.txt")
        with pytest.raises(InvalidParameterError, match="not both"):
            await layer.attachments(1, object_ids=[2])
        with pytest.raises(InvalidParameterError, match="folder"):
            await layer.download_attachment(1, 1, tmp_path)
        with pytest.raises(InvalidParameterError, match="media type"):
            await layer.add_attachment(1, b"x", name="x", content_type="jpeg")
        with pytest.raises(InvalidParameterError, match="empty"):
            await layer.delete_attachments(1, [])
    assert 0 == fake.statistics().total_requests


async def test_the_public_types(fake: FakeArcGIS) -> None:
    """AttachmentInfo carries the global ids and, from queryAttachments, no URL unless asked."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        added = await layer.add_attachment(1, b"x", name="x.txt")
        [info] = await layer.attachments(1)
    assert isinstance(info, AttachmentInfo)
    assert (added.global_id, None) == (info.global_id, info.url)
    assert info.global_id is not None
    assert info.global_id.startswith("{")


@pytest.mark.real_clock  # real sockets
async def test_round_trip_over_real_http(fake: FakeArcGIS) -> None:
    """Over real HTTP (the emulator behind hypercorn), a multi-megabyte upload with every
    byte value in it comes back exactly."""
    data = EVERY_BYTE + random.Random(3).randbytes(2 * 1024 * 1024)
    async with fake.serve() as origin:
        auth = UserTokenAuth(USER, PASSWORD, origin)
        async with ArchieClient(f"{origin}/arcgis/rest/services", auth) as client:
            layer = FeatureLayer(client, "Parcels", 0)
            added = await layer.add_attachment(7, data, name="big.bin")
            assert added.attachment_id is not None
            content = await layer.download_attachment(7, added.attachment_id)
    assert data == content


# -- the emulator on its own -----------------------------------------------------------


async def test_emulator_serves_the_file_without_f() -> None:
    """As a server does, the download URL answers the file whatever ``f`` says, with its
    content type; the other attachment resources want f=json."""
    fake = FakeArcGIS()
    fake.add_feature_layer("Parcels", count=3, has_attachments=True)
    url = f"{fake.origin}{LAYER}/1"
    async with fake.client() as http:
        added = await http.post(
            f"{url}/addAttachment",
            params={"f": "json"},
            files={"attachment": ("p.png", b"\x89PNG", "image/png")},
        )
        attachment_id = added.json()["addAttachmentResult"]["objectId"]
        download = await http.get(f"{url}/attachments/{attachment_id}")
        listing = await http.get(f"{url}/attachments")
    assert (b"\x89PNG", "image/png") == (download.content, download.headers["content-type"])
    assert listing.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "detail"),
    [
        ("GET", "1/addAttachment", {}, "addAttachment requires POST."),
        ("POST", "1/addAttachment", {"data": {"keywords": "x"}}, "'attachment' parameter"),
        ("GET", "queryAttachments", {}, "One of 'objectIds', 'globalIds'"),
        (
            "POST",
            "1/addAttachment",
            {"content": b"junk", "headers": {"content-type": "multipart/form-data; boundary=b"}},
            "The multipart request could not be read",
        ),
    ],
)
async def test_emulator_refuses_what_servers_refuse(
    method: str, path: str, kwargs: dict[str, Any], detail: str
) -> None:
    """Malformed attachment requests get an ArcGIS error naming the problem."""
    fake = FakeArcGIS()
    fake.add_feature_layer("Parcels", count=3, has_attachments=True)
    async with fake.client() as http:
        answer = await http.request(
            method, f"{fake.origin}{LAYER}/{path}", params={"f": "json"}, **kwargs
        )
    error = answer.json()["error"]
    assert 400 == error["code"]
    assert any(d.startswith(detail) for d in error["details"]), error


async def test_emulator_query_attachments_filters(fake: FakeArcGIS) -> None:
    """queryAttachments takes a definitionExpression and returns URLs when asked."""
    async with client_for(fake) as client:
        layer = FeatureLayer(client, "Parcels", 0)
        await layer.add_attachment(2, b"a", name="a.txt")
        await layer.add_attachment(3, b"b", name="b.txt")
        body = await client.get_json(
            "Parcels/FeatureServer/0/queryAttachments",
            params={"definitionExpression": "OBJECTID > 2", "returnUrl": True},
        )
    [group] = body["attachmentGroups"]
    assert 3 == group["parentObjectId"]
    assert group["attachmentInfos"][0]["url"].endswith(f"{LAYER}/3/attachments/2")
