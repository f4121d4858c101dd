"""mmcv's compiled CPU ops (built for torch >= 2.14 by tools/install.sh) really run."""

import torch


def test_mmdet_and_mmseg_import_with_compiled_ops():
    import mmcv
    import mmcv.ops  # noqa: F401 - fails without the compiled extension
    import mmdet
    import mmseg

    assert mmcv.__version__ == "2.1.0"
    assert mmdet.__version__ == "3.3.0"
    assert mmseg.__version__ == "1.2.2"


def test_nms_keeps_the_best_of_overlapping_boxes():
    from mmcv.ops import nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    kept, indices = nms(boxes, scores, iou_threshold=0.5)
    assert indices.tolist() == [0, 2]
    assert torch.allclose(kept[:, 4], torch.tensor([0.9, 0.7]))


def test_roi_align_averages_a_constant_region():
    from mmcv.ops import RoIAlign

    features = torch.zeros(1, 2, 8, 8)
    features[:, 0] = 3.0
    features[:, 1, :4, :4] = 5.0
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])  # batch index, x1, y1, x2, y2
    pooled = RoIAlign(output_size=(2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)(features, rois)
    assert pooled.shape == (1, 2, 2, 2)
    assert torch.allclose(pooled[0, 0], torch.full((2, 2), 3.0))
    assert torch.allclose(pooled[0, 1], torch.full((2, 2), 5.0))
