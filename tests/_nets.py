"Helpers shared by the test files: untrained networks made to route and exit differently for different images."
import torch, torch.nn as nn

def randomise(m, # a DynNet
              seed:int=0,
              zero_bias:bool=True, # gate/policy biases to zero (False: random like the weights)
              mark_trained:bool=False, # bump BN's num_batches_tracked, so exporters that refuse untrained nets accept it
             ):
    "Random BN statistics and opinionated gates/policies: exits and experts differ between images of an untrained net."
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5, generator=g); mod.bias.data.normal_(0, .2, generator=g)
            mod.running_mean.normal_(0, .1, generator=g); mod.running_var.uniform_(0.5, 1.5, generator=g)
            if mark_trained: mod.num_batches_tracked += 1
    for mod in [*m.policies, *m.gates]:
        for n, p in mod.named_parameters():
            if n.endswith('weight') or not zero_bias: p.data.normal_(0, 0.5, generator=g)
            else: p.data.zero_()
    return m.eval()
