"""YOLOv3 as the reference trains and decodes it: the ``yolov3`` neck and widths, the head
``MGCAYOLOHead`` (``tasks/detection/heads.py``: the reference's YOLOLoss per level, objectness as
the score, its "+1"-pixel NMS, unclipped boxes).

The reference keeps objectness >= 0.5; here every detection down to objectness 0.001 is written,
so that the headline ``map`` sees the whole curve; ``map_mgca`` applies the reference's 0.5 to the
same scores (the detections above 0.5 are exactly the reference's: see the head's docstring).
"""

_base_ = "./yolov3.py"

model = dict(
    bbox_head=dict(type="MGCAYOLOHead"),
    test_cfg=dict(_delete_=True, conf_thr=0.001, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100),
)
