# SETR progressive-upsampling decoder on the patch-token grid (SETRModel of the reference).
_base_ = ['./base.py']
encoder_outputs = 'tokens'  # what the decoder reads from the frozen encoder (models.encoder_outputs)
model = dict(decode_head=dict(type='SETRHead', stage_channels=(512, 256, 128, 64), norm_cfg=dict(type='BN')))
