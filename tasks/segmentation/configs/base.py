# The reference's segmentation recipe (PROTOCOL.md 6.4, 8.4): shared by the U-Net and SETR configs.
# Any value can be overridden with key=value options (mmengine's --cfg-options syntax), e.g.
# optim_wrapper.optimizer.lr=1e-3 or train_cfg.max_epochs=5. The learning rate and batch size of
# a (dataset, fraction) come from hyperparameters.py and are written into optim_wrapper and the
# dataloaders before the overrides apply. The frozen encoder is not configured here: the task
# adapter hands the loaded backbone to model.backbone.
default_scope = 'mmseg'

# Side of the square input (reference: Resize(224, 224)); smaller prepared images use their own
# size, rounded down to the decoder's stride (tasks/segmentation/protocol.py).
input_size = 224
# Train-time augmentation of image and mask together (albumentations; 0 = cv2.BORDER_CONSTANT).
augmentation = dict(type='ShiftScaleRotate', shift_limit=0.0, scale_limit=0.1, rotate_limit=10, p=0.5, border_mode=0)

model = dict(
    type='EncoderDecoder',
    # Batches 0-255 pixels; images arrive at the input size (no padding). No normalisation here: the
    # frozen encoder applies the backbone's own preprocessing (channels, range, mean/std; MGCA's is
    # mean = std = 0.5), the same function as every task (benchmark.backbones.normalise).
    data_preprocessor=dict(type='SegDataPreProcessor', mean=None, std=None, bgr_to_rgb=False,
                           pad_val=0, seg_pad_val=0),
    backbone=dict(type='FrozenEncoder'),  # outputs: the head config's encoder_outputs; encoder: set by the adapter
    decode_head=dict(
        num_classes=2, out_channels=1, threshold=0.5, dropout_ratio=0.0,
        # MixedLoss(alpha=10): 10 * focal(gamma=2) - log(soft Dice, smooth 1), tasks/segmentation/losses.py
        loss_decode=dict(type='FocalLogDiceLoss', alpha=10.0, gamma=2.0, smooth=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# AdamW, betas (0.9, 0.999), weight decay 0.05, no scheduler (run_seg_finetune.sh, mgca_segmenter.py).
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.05))

# At most 50 epochs, validation every epoch; the lowest validation loss is tested (not the best Dice).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=50, val_interval=1)
val_cfg = dict(type='LossAndDiceValLoop')
val_evaluator = dict(type='ValidationLossDice')

# Reference loaders: training shuffled with drop_last; validation keeps every image (defect B7).
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False, drop_last=True,
                        sampler=dict(type='EpochSeededSampler', shuffle=True), collate_fn=dict(type='pseudo_collate'))
val_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False, drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False), collate_fn=dict(type='pseudo_collate'))

# The lowest validation loss is tested; training stops after 10 validations without a strictly lower
# one, and at once on a non-finite one: Lightning's EarlyStopping(val_loss, patience=10, min_delta=0,
# check_finite=True) of the reference (benchmark/heads/stopping.py). The best-epoch checkpoint, early
# stopping, history.json and the resume checkpoint are the shared hooks of benchmark/heads/hooks.py.
selection = dict(monitor='loss', rule='less', patience=10, min_delta=0.0, stop_on_non_finite=True)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = []  # run after the shared hooks
# training losses averaged over the last 10 iterations in mmengine's log lines; validation values as they are
log_processor = dict(by_epoch=True, window_size=10, mean_pattern=r'^(?!val/).*(loss|time|data_time|grad_norm).*')
log_level = 'INFO'
env_cfg = dict(cudnn_benchmark=True, dist_cfg=dict(backend='nccl'))
# Batch size of the cached mode's one pass of the encoder over every image.
encode_batch_size = 32
