"""One-off: resnet on CUDA with bf16 autocast vs fp32."""
import time, torch
from ecg_ray.models import build_model
dev = torch.device("cuda")
x = torch.randn(64, 1, 1500, device=dev); y = torch.randint(0, 4, (64,), device=dev)
for name in ("resnet", "cnn_lstm"):
    for amp in (False, True):
        for bs in (64, 256):
            xb, yb = x.repeat(bs // 64, 1, 1), y.repeat(bs // 64)
            m = build_model(name).to(dev).train(); opt = torch.optim.AdamW(m.parameters())
            def step():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                    loss = torch.nn.functional.cross_entropy(m(xb), yb)
                opt.zero_grad(); loss.backward(); opt.step()
            for _ in range(5): step()
            torch.cuda.synchronize(); t = time.perf_counter()
            for _ in range(20): step()
            torch.cuda.synchronize()
            print(name, "bf16" if amp else "fp32", "batch", bs, f"{20*bs/(time.perf_counter()-t):.0f} seg/s", flush=True)
