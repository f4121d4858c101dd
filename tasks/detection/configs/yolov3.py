"""YOLOv3 on a frozen encoder: the reference's detector (PROTOCOL.md 8.3), as mmdet builds it.

Only ``model`` is read (the training schedule is ``tasks/detection/protocol.py``); the rest of the
inherited COCO config is unused. Filled in when the detector is built
(``tasks/detection/model.py``): the backbone's family, channels and strides (from the encoder)
and ``neck.in_channels`` (deepest map first). Lengths in pixels (``anchor_generator.base_sizes``)
are written for 416-pixel inputs, as mmdet's and the reference's COCO anchors are, and scaled to
the run's input size (224 / 416 for the reference's 224-pixel input).

Any key can be overridden as ``key=value`` (mmengine ``--cfg-options`` syntax), e.g.
``model.test_cfg.nms.iou_threshold=0.45``.
"""

_base_ = "mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py"

model = dict(
    data_preprocessor=dict(_delete_=True, type="DetectionInputs"),
    backbone=dict(_delete_=True, type="FrozenEncoder"),
    # The reference's widths (mgca/models/ssl_detector.py L149-233): per scale 5 conv-BN-LeakyReLU
    # blocks alternating 1x1 / 3x3 with [512, 1024], [256, 512], [128, 256] filters in the neck, the
    # sixth (3x3, double width) and the 1x1 prediction conv in the head.
    neck=dict(out_channels=[512, 256, 128]),
    bbox_head=dict(
        num_classes=1,
        in_channels=[512, 256, 128],
        out_channels=[1024, 512, 256],
        anchor_generator=dict(
            base_sizes=[[(116, 90), (156, 198), (373, 326)],  # stride 32 (7 x 7 at 224 px)
                        [(30, 61), (62, 45), (59, 119)],  # stride 16
                        [(10, 13), (16, 30), (33, 23)]],  # stride 8
            strides=[32, 16, 8]),
    ),
    # Every detection down to objectness 0.001 (the reference keeps objectness >= 0.5: defect B1);
    # every one of them into NMS (the reference has no pre-NMS cut; mmdet's COCO config keeps the
    # 1000 of highest class probability, and its -1 would drop the last one: 10**9 is "all");
    # NMS at IoU 0.5 as the reference's; at most 100 per image (the metric's maxDets).
    test_cfg=dict(nms_pre=10**9, score_thr=0.0, conf_thr=0.001, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100),
)
