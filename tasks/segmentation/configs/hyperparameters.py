# Learning rate and batch size per dataset and label fraction (percent), as run_seg_finetune.sh
# runs them (PROTOCOL.md 8.4): lr 5e-4 everywhere, batch 8 on SIIM and 16 on RSNA.
hyperparameters = dict(
    siim={'1': dict(lr=5e-4, batch_size=8), '10': dict(lr=5e-4, batch_size=8), '100': dict(lr=5e-4, batch_size=8)},
    rsna={'1': dict(lr=5e-4, batch_size=16), '10': dict(lr=5e-4, batch_size=16), '100': dict(lr=5e-4, batch_size=16)},
)
