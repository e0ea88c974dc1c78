"""Proposals of an image too large to run whole: tiles, placed back in the
image and merged, and a trained model that tiles past max_pixels."""
import numpy as onp
import pytest
from mxnet import np

import rpn
from conftest import SMALL
from helpers.models import small_model
from rpn.model.tiles import propose_tiled, tile_starts


@pytest.mark.parametrize("length, tile, overlap", [(1000, 512, 128), (512, 512, 128),
                                                    (300, 512, 128), (2160, 2048, 512),
                                                    (5000, 1024, 256)])
def test_tiles_cover_the_side_and_overlap_as_asked(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and min(length, starts[-1] + tile) == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    assert all(0 <= s <= max(length - tile, 0) for s in starts)


def test_tiles_are_placed_back_in_the_image_and_inner_edges_dropped():
    """A stand-in network proposes, in every tile, the whole tile (which
    touches its inner edges unless the tile is the image) and a central box;
    the merged proposals are the central boxes in image coordinates."""
    def propose(X, sizes):
        return np.array([[0.9, 0.8]]), np.array([[[0, 0, 1, 1], [0.4, 0.4, 0.6, 0.6]]])
    height, width, tile = 1000, 1200, 512
    scores, boxes = propose_tiled(propose, np.zeros((1, 3, height, width)),
                                  np.array([[height, width]]), tile=tile, overlap=128,
                                  nms_threshold=0.7, keep=30)
    kept = scores.asnumpy()[0] >= 0
    got = onp.sort(boxes.asnumpy()[0][kept] * [width, height, width, height], axis=0)
    want = onp.sort([[x + 0.4 * tile, y + 0.4 * tile, x + 0.6 * tile, y + 0.6 * tile]
                     for y in tile_starts(height, tile, 128)
                     for x in tile_starts(width, tile, 128)], axis=0)
    onp.testing.assert_allclose(got, want, atol=1e-2)
    onp.testing.assert_allclose(scores.asnumpy()[0][kept], 0.8)


def test_an_image_that_fits_one_tile_gives_the_whole_images_proposals():
    model = small_model(SMALL.replace(resize="native"))
    trained = rpn.TrainedModel(model, SMALL.replace(resize="native"))
    X, sizes = np.random.normal(size=(1, 3, 64, 96)), np.array([[64, 96]])
    whole = trained(X, sizes)
    tiled = propose_tiled(model, X, sizes, tile=128, overlap=32, nms_threshold=1.0,
                          keep=SMALL.model.post_nms_top_n_test)
    n = int((whole.scores.asnumpy()[0] >= 0).sum())
    onp.testing.assert_allclose(tiled[0].asnumpy()[0, :n], whole.scores.asnumpy()[0, :n],
                                rtol=1e-5)
    onp.testing.assert_allclose(tiled[1].asnumpy()[0, :n], whole.boxes.asnumpy()[0, :n],
                                atol=1e-5)


def test_a_trained_model_tiles_a_canvas_past_max_pixels():
    config = SMALL.replace(resize="native", max_pixels=65536, tile_size=256)
    model = rpn.TrainedModel(small_model(config), config)
    X, sizes = np.random.normal(size=(1, 3, 320, 480)), np.array([[320, 480]])
    out = model(X, sizes)
    assert out.scores.shape == (1, config.model.post_nms_top_n_test)
    kept = out.boxes.asnumpy()[0][out.scores.asnumpy()[0] >= 0]
    assert len(kept) > 0 and kept.min() >= 0 and kept.max() <= 1
    assert (kept[:, 2] * 480 > 256).any()                 # boxes of the right-hand tiles
