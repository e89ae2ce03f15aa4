"""Deep backbones for extraction: DINOv2 ViTs and ResNets (torchvision / CVNet layouts), the AMES detector and the
SuperGlobal pooling modules, in plain torch so that official state dicts load unchanged."""
