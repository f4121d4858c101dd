"""Faster R-CNN with FPN on a frozen encoder (not in the reference, which evaluates only ResNet-50
with YOLOv3): mmdet's standard two-stage detector on the encoder's maps at strides 8, 16, 32.

Only ``model`` is read (the training schedule is ``tasks/detection/protocol.py``). Filled in when
the detector is built (``tasks/detection/model.py``): the backbone's family, channels and strides
and ``neck.in_channels`` (finest map first). Lengths in pixels (the RPN anchor ``scales``, in
strides, and the RoI extractor's ``finest_scale``) are written for 224-pixel inputs and scaled to
the run's input size. mmdet's COCO recipe sees ~800-pixel images with levels at strides 4-64; on
224-pixel chest X-rays the anchors (stride x 2: 16, 32, 64, 128 px) and the RoI level scale are
reduced accordingly.

Any key can be overridden as ``key=value`` (mmengine ``--cfg-options`` syntax).
"""

_base_ = "mmdet::_base_/models/faster-rcnn_r50_fpn.py"

model = dict(
    data_preprocessor=dict(_delete_=True, type="DetectionInputs"),
    backbone=dict(_delete_=True, type="FrozenEncoder"),
    neck=dict(out_channels=256, num_outs=4),  # P3-P5 from the encoder, P6 by max pooling
    rpn_head=dict(anchor_generator=dict(scales=[2], ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=[8, 16, 32], finest_scale=28),
        bbox_head=dict(num_classes=1),
    ),
    # Every detection down to 0.001 (B1), at most 100 per image (the metric's maxDets).
    test_cfg=dict(rcnn=dict(score_thr=0.001, max_per_img=100)),
)
