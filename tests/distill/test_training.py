import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nonn.distill.training import BestState, accuracy


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 2)

    def training_step(self, batch, _idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, _idx):
        x, y = batch
        self.log("val_acc", accuracy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_best_state_keeps_its_weights_beside_a_lightning_checkpoint(tmp_path):
    # Lightning calls every callback's state_dict() when it writes a checkpoint; the best weights must not shadow it.
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 4, generator=gen), torch.randint(0, 2, (32,), generator=gen))
    best = BestState()
    trainer = L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[best, L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    model = _Tiny()
    trainer.fit(model, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    assert (tmp_path / "last.ckpt").exists()
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["epoch"] == 1
    assert best.best_epoch in (0, 1)
    assert set(best.best_weights) == set(model.net.state_dict())
