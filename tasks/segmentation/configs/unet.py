# U-Net decoder on the five stages of a ResNet encoder (smp.Unet("resnet50") of the reference).
_base_ = ['./base.py']
encoder_outputs = 'stages'  # what the decoder reads from the frozen encoder (models.encoder_outputs)
model = dict(decode_head=dict(type='UNetHead', decoder_channels=(256, 128, 64, 32, 16), norm_cfg=dict(type='BN')))
