"""ClassifyStream and batching: many images over one stream, each answered by id with its own
prediction; the images that wait while a node is busy travel to it together."""

import asyncio
import time

import grpc
import numpy as np
import pytest
from edge_support import IMAGE, SHAPE, free_port, reference

from nonn.edge import nonn_pb2 as pb
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge.client import StreamingClient, to_message
from nonn.edge.errors import GatewayError
from nonn.edge.gateway import MAX_IN_FLIGHT_PER_STREAM

TIMEOUT = 10.0
IMAGES = np.random.default_rng(11).integers(0, 256, size=(16, SHAPE[1], SHAPE[2], SHAPE[0]), dtype=np.uint8)


async def _classify_all(address: str, images, **kwargs) -> list[dict]:
    async with StreamingClient(address, insecure=True) as client:
        return await asyncio.gather(*(client.classify(image, layout="HWC", **kwargs) for image in images))


@pytest.mark.parametrize("max_batch", [16, 4, 1])
def test_concurrent_images_keep_their_own_answers(gateways, pixel_nodes, pixel_artifacts, max_batch):
    address = gateways(pixel_artifacts.manifest, pixel_nodes, insecure=True, max_batch=max_batch)
    results = asyncio.run(_classify_all(address, IMAGES, timeout_s=TIMEOUT))
    for image, result in zip(IMAGES, results):
        np.testing.assert_allclose(result["logits"], reference(pixel_artifacts, image), atol=1e-5)
        assert result["client_ms"] > 0 and not result["degraded"]
    # The 16 images asked for in one turn of the client's loop leave in one message; the gateway
    # sends them to the idle nodes together, in batches of max_batch (a full batch never waits),
    # the same batch to every node.
    assert {n["batch_size"] for r in results for n in r["nodes"]} == {max_batch}
    assert all(r["nodes"][0]["batch_size"] == r["nodes"][1]["batch_size"] for r in results)
    if max_batch > 1:  # each image is charged its share of its batch's bytes: less than a lone image costs
        assert all(n["bytes_sent"] < int(np.prod(SHAPE)) + 64 for r in results for n in r["nodes"])


def test_stream_answers_by_id_and_survives_a_bad_request(gateways, shared_nodes, artifacts):
    address = gateways(artifacts.manifest, shared_nodes, insecure=True)
    bad = pb.Image(shape=[7, 7, 3], dtype="uint8", data=bytes(7 * 7 * 3), layout="HWC")
    first = pb.ClassifyRequests(requests=[pb.ClassifyRequest(id=1, image=to_message(IMAGES[0], "HWC")),
                                          pb.ClassifyRequest(id=2, image=bad),
                                          pb.ClassifyRequest(id=3, image=to_message(IMAGES[1], "HWC"))])
    second = pb.ClassifyRequests(requests=[pb.ClassifyRequest(id=4, image=to_message(IMAGES[2], "HWC"))])
    with grpc.insecure_channel(address) as channel:
        replies = list(pb_grpc.GatewayStub(channel).ClassifyStream(iter([first, second]), timeout=TIMEOUT))
    by_id = {r.id: r for message in replies for r in message.replies}
    assert sorted(by_id) == [1, 2, 3, 4]
    assert by_id[2].code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and not by_id[2].HasField("prediction")
    assert "expected an image of 8x8 pixels" in by_id[2].error
    for request_id, image in ((1, IMAGES[0]), (3, IMAGES[1]), (4, IMAGES[2])):
        assert by_id[request_id].code == 0
        np.testing.assert_allclose(by_id[request_id].prediction.logits, reference(artifacts, image), atol=1e-5)


def test_a_slow_node_is_named_in_the_reply_within_the_request_timeout(gateways, processes, shared_nodes, artifacts):
    _, slow = processes.node(artifacts.students[1], "--delay-ms", "400")
    address = gateways(artifacts.manifest, [shared_nodes[0], slow], insecure=True, deadline_s=5.0)

    async def run():
        async with StreamingClient(address, insecure=True) as client:
            start = time.monotonic()
            with pytest.raises(GatewayError) as info:
                await client.classify(IMAGE, timeout_s=0.3, layout="HWC")
            return info.value, time.monotonic() - start

    error, elapsed = asyncio.run(run())
    assert error.code == "DEADLINE_EXCEEDED"
    assert f"node 1 ({slow}) did not answer" in error.details or "no reply within 300 ms" in error.details
    assert elapsed < 2.0


def test_more_images_in_flight_than_a_stream_takes_are_refused_one_by_one(gateways, processes, shared_nodes,
                                                                          artifacts):
    _, slow = processes.node(artifacts.students[1], "--delay-ms", "200")
    address = gateways(artifacts.manifest, [shared_nodes[0], slow], insecure=True)
    extra = 3
    results = asyncio.run(_gather_outcomes(address, [IMAGE] * (MAX_IN_FLIGHT_PER_STREAM + extra)))
    refused = [r for r in results if isinstance(r, GatewayError)]
    assert len(refused) == extra and all(e.code == "RESOURCE_EXHAUSTED" for e in refused)
    assert "open another stream" in refused[0].details
    assert sum(isinstance(r, dict) for r in results) == MAX_IN_FLIGHT_PER_STREAM


async def _gather_outcomes(address, images):
    async with StreamingClient(address, insecure=True) as client:
        return await asyncio.gather(*(client.classify(i, timeout_s=TIMEOUT, layout="HWC") for i in images),
                                    return_exceptions=True)


def test_a_gateway_that_is_down_is_unavailable_at_once():
    async def run():
        async with StreamingClient(f"127.0.0.1:{free_port()}", insecure=True) as client:
            start = time.monotonic()
            with pytest.raises(GatewayError) as info:
                await client.classify(IMAGE, timeout_s=TIMEOUT)
            return info.value, time.monotonic() - start

    error, elapsed = asyncio.run(run())
    assert error.code == "UNAVAILABLE" and elapsed < TIMEOUT / 2


def test_the_client_opens_a_new_stream_after_the_gateway_restarts(gateways, shared_nodes, artifacts):
    from nonn.edge.gateway import serve_gateway

    port = free_port()
    server, _ = serve_gateway(artifacts.manifest, shared_nodes, f"127.0.0.1:{port}", insecure=True)

    async def run():
        async with StreamingClient(f"127.0.0.1:{port}", insecure=True) as client:
            first = await client.classify(IMAGE, timeout_s=TIMEOUT)
            await asyncio.to_thread(server.stop, 0)
            with pytest.raises(GatewayError):
                await client.classify(IMAGE, timeout_s=TIMEOUT)
            gateways(artifacts.manifest, shared_nodes, f"127.0.0.1:{port}", insecure=True)
            for _ in range(50):  # the channel reconnects with backoff
                try:
                    return first, await client.classify(IMAGE, timeout_s=TIMEOUT)
                except GatewayError:
                    await asyncio.sleep(0.1)
            raise AssertionError("the client never reached the restarted gateway")

    first, again = asyncio.run(run())
    assert first["label"] == again["label"]
    np.testing.assert_allclose(again["logits"], reference(artifacts), atol=1e-5)


def test_a_hung_node_does_not_hold_back_the_next_images_in_degraded_mode(gateways, processes, shared_nodes,
                                                                       artifacts):
    """Images wait for busy nodes, but not for a node whose every image already gave up."""
    _, hung = processes.node(artifacts.students[1], "--delay-ms", "5000")
    address = gateways(artifacts.manifest, [shared_nodes[0], hung], insecure=True, deadline_s=0.3, degraded=True)

    async def run():
        async with StreamingClient(address, insecure=True) as client:
            results = []
            for image in IMAGES[:3]:
                start = time.monotonic()
                results.append((await client.classify(image, timeout_s=TIMEOUT, layout="HWC"),
                                time.monotonic() - start))
            return results

    for (result, elapsed), image in zip(asyncio.run(run()), IMAGES):
        assert result["degraded"] and result["missing_nodes"] == [hung]
        assert elapsed < 1.5  # the deadline, not the hung node's 10 s
        np.testing.assert_allclose(result["logits"], reference(artifacts, image, missing=[1]), atol=1e-5)


def test_pixel_and_float_images_sent_together_travel_in_separate_batches(gateways, pixel_nodes, pixel_artifacts):
    """A gray image for a colour model is normalised by the gateway (float32); the others go to the
    nodes as uint8. A batch holds one dtype, so they part ways and each gets its own answer."""
    address = gateways(pixel_artifacts.manifest, pixel_nodes, insecure=True)
    gray = IMAGES[:, :, :, 0]  # [N, H, W]
    images = [IMAGES[i] if i % 2 else gray[i] for i in range(8)]
    layouts = ["HWC" if i % 2 else "HW" for i in range(8)]

    async def run():
        async with StreamingClient(address, insecure=True) as client:
            return await asyncio.gather(*(client.classify(image, timeout_s=TIMEOUT, layout=layout)
                                          for image, layout in zip(images, layouts)))

    results = asyncio.run(run())
    for i, (image, result) in enumerate(zip(images, results)):
        if i % 2:
            expected = reference(pixel_artifacts, image)
            assert result["nodes"][0]["bytes_sent"] < int(np.prod(SHAPE)) + 64  # uint8
        else:  # the reference of a gray image: the same luma replicated into 3 channels
            expected = reference(pixel_artifacts, np.repeat(image[:, :, None], 3, axis=2))
            assert result["nodes"][0]["bytes_sent"] >= 4 * int(np.prod(SHAPE))  # float32
        np.testing.assert_allclose(result["logits"], expected, atol=1e-5)


def test_predict_takes_an_encoded_image_and_times_out_on_its_own(gateways, shared_nodes, artifacts):
    from nonn.edge import serving

    address = gateways(artifacts.manifest, shared_nodes, insecure=True)

    async def answered():
        async with StreamingClient(address, insecure=True) as client:
            return await client.predict(to_message(IMAGES[3], "HWC"), timeout_s=TIMEOUT)

    prediction, client_ms = asyncio.run(answered())
    np.testing.assert_allclose(prediction.logits, reference(artifacts, IMAGES[3]), atol=1e-5)
    assert client_ms >= prediction.gateway_ms > 0

    class Silent(pb_grpc.GatewayServicer):  # a gateway that reads every image and never answers
        def ClassifyStream(self, request_iterator, context):
            for _ in request_iterator:
                pass
            return iter(())

    server, port, _, _ = serving.start_server(lambda s: pb_grpc.add_GatewayServicer_to_server(Silent(), s),
                                              ["nonn.v1.Gateway"], "127.0.0.1:0", None, True,
                                              max_message_bytes=1 << 20, workers=2)

    async def unanswered():
        async with StreamingClient(f"127.0.0.1:{port}", insecure=True) as client:
            start = time.monotonic()
            with pytest.raises(GatewayError) as info:
                await client.predict(to_message(IMAGES[3], "HWC"), timeout_s=0.3)
            return info.value, time.monotonic() - start

    try:
        error, elapsed = asyncio.run(unanswered())
    finally:
        server.stop(0)
    assert error.code == "DEADLINE_EXCEEDED" and "no reply within 300 ms" in error.details
    assert 0.3 <= elapsed < 2.0


def test_a_caller_that_gives_up_strands_no_other_image(gateways, shared_nodes, artifacts):
    address = gateways(artifacts.manifest, shared_nodes, insecure=True)

    async def run():
        async with StreamingClient(address, insecure=True) as client:
            quitter = asyncio.ensure_future(client.predict(to_message(IMAGES[0], "HWC"), timeout_s=TIMEOUT))
            stayer = asyncio.ensure_future(client.predict(to_message(IMAGES[1], "HWC"), timeout_s=TIMEOUT))
            await asyncio.sleep(0)
            quitter.cancel()  # asked for in the same turn, then abandoned
            start = time.monotonic()
            prediction, _ = await stayer
            return prediction, time.monotonic() - start, quitter.cancelled()

    prediction, elapsed, cancelled = asyncio.run(run())
    assert cancelled and elapsed < TIMEOUT / 2
    np.testing.assert_allclose(prediction.logits, reference(artifacts, IMAGES[1]), atol=1e-5)


def test_an_impossible_shape_is_answered_invalid_argument_and_the_stream_goes_on(gateways, shared_nodes, artifacts):
    address = gateways(artifacts.manifest, shared_nodes, insecure=True)
    huge = pb.Image(shape=[0, 2**40, 2**40], dtype="uint8", data=b"")
    messages = [pb.ClassifyRequests(requests=[pb.ClassifyRequest(id=1, image=huge)]),
                pb.ClassifyRequests(requests=[pb.ClassifyRequest(id=2, image=to_message(IMAGES[4], "HWC"))])]
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        replies = {r.id: r for m in stub.ClassifyStream(iter(messages), timeout=TIMEOUT) for r in m.replies}
        with pytest.raises(grpc.RpcError) as info:
            stub.Classify(huge, timeout=TIMEOUT)
    assert replies[1].code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "too large" in replies[1].error
    assert replies[2].code == 0
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_node_that_never_answers_fails_fast_once_its_batches_pile_up(gateways, shared_nodes, artifacts):
    """Past MAX_IN_FLIGHT unanswered batches a hung node's images fail at once (zero-filled in
    degraded mode) while the healthy node keeps serving: nothing waits on the hung one."""
    from nonn.edge import serving
    from nonn.edge.fan_out import MAX_IN_FLIGHT

    class Hung(pb_grpc.StudentServicer):  # accepts the stream, reads every batch, answers none
        def FeaturesStream(self, request_iterator, context):
            context.send_initial_metadata(())
            for _ in request_iterator:
                pass
            return iter(())

    server, port, _, _ = serving.start_server(lambda s: pb_grpc.add_StudentServicer_to_server(Hung(), s),
                                              ["nonn.v1.Student"], "127.0.0.1:0", None, True,
                                              max_message_bytes=1 << 20, workers=2, stream_threads=2)
    hung = f"127.0.0.1:{port}"
    address = gateways(artifacts.manifest, [shared_nodes[0], hung], insecure=True, deadline_s=0.05, degraded=True)

    async def run():
        async with StreamingClient(address, insecure=True) as client:
            out = []
            for i in range(MAX_IN_FLIGHT + 8):
                start = time.monotonic()
                result = await client.classify(IMAGES[i % len(IMAGES)], timeout_s=TIMEOUT, layout="HWC")
                out.append((result, time.monotonic() - start))
            return out

    try:
        results = asyncio.run(run())
    finally:
        server.stop(0)
    assert all(r["degraded"] and r["missing_nodes"] == [hung] and not r["nodes"][0]["missing"] for r, _ in results)
    late = results[MAX_IN_FLIGHT:]
    assert all(f"has {MAX_IN_FLIGHT} batches it has not answered" in r["nodes"][1]["error"] for r, _ in late)
    assert all(elapsed < 0.05 for _, elapsed in late)  # no longer waits for the deadline


def test_a_batch_too_large_for_a_node_is_sent_again_in_smaller_batches(gateways, processes, artifacts):
    """16 float32 8x8x3 images are 12 kB; the nodes take 4 kB messages and say so when they
    accept the stream, and the gateway sends the images in batches that fit instead of failing them."""
    small = [processes.node(model, "--max-message-bytes", "4096")[1] for model in artifacts.students]
    address = gateways(artifacts.manifest, small, insecure=True)
    results = asyncio.run(_classify_all(address, IMAGES, timeout_s=TIMEOUT))
    for image, result in zip(IMAGES, results):
        np.testing.assert_allclose(result["logits"], reference(artifacts, image), atol=1e-5)
        assert not result["degraded"]
    again = asyncio.run(_classify_all(address, IMAGES, timeout_s=TIMEOUT))  # later batches start small
    for run in (results, again):
        sizes = [n["batch_size"] for r in run for n in r["nodes"]]
        assert max(sizes) > 1 and max(sizes) * 4 * int(np.prod(SHAPE)) <= 4096


def test_a_node_without_streams_refusing_a_large_batch_gets_it_again_smaller(gateways, artifacts):
    """An older node (Features only) says nothing of its message limit; the batch it refuses as
    too large is sent again in halves until the images get through."""
    from nonn.edge import serving
    from nonn.edge.node import StudentServicer, load_session

    class FeaturesOnly(pb_grpc.StudentServicer):
        def __init__(self, model):
            self.inner = StudentServicer(load_session(model))

        def Features(self, request, context):
            return self.inner.Features(request, context)

    servers = [serving.start_server(lambda s, m=m: pb_grpc.add_StudentServicer_to_server(FeaturesOnly(m), s),
                                    ["nonn.v1.Student"], "127.0.0.1:0", None, True, max_message_bytes=4096,
                                    workers=4)
               for m in artifacts.students]
    try:
        # grpcio takes 0.1 s or more to refuse an oversized message: a deadline that allows a few
        address = gateways(artifacts.manifest, [f"127.0.0.1:{port}" for _, port, _, _ in servers], insecure=True,
                           deadline_s=5.0)
        results = asyncio.run(_classify_all(address, IMAGES, timeout_s=TIMEOUT))
    finally:
        for server, *_ in servers:
            server.stop(0)
    for image, result in zip(IMAGES, results):
        np.testing.assert_allclose(result["logits"], reference(artifacts, image), atol=1e-5)
    assert max(n["batch_size"] for r in results for n in r["nodes"]) * 4 * int(np.prod(SHAPE)) <= 4096
