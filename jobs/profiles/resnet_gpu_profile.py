"""One-off: where resnet's time goes on CUDA (cudnn.benchmark off/on, top kernels)."""
import time, torch
from ecg_ray.models import build_model
from torch.profiler import profile, ProfilerActivity
dev = torch.device("cuda")
x = torch.randn(64, 1, 1500, device=dev); y = torch.randint(0, 4, (64,), device=dev)
for name in ("resnet", "cnn_only"):
    for bench in (False, True):
        torch.backends.cudnn.benchmark = bench
        m = build_model(name).to(dev).train(); opt = torch.optim.AdamW(m.parameters())
        def step():
            loss = torch.nn.functional.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
        for _ in range(5): step()
        torch.cuda.synchronize(); t = time.perf_counter()
        for _ in range(30): step()
        torch.cuda.synchronize(); print(name, "cudnn.benchmark", bench, f"{30*64/(time.perf_counter()-t):.0f} seg/s", flush=True)
torch.backends.cudnn.benchmark = False
m = build_model("resnet").to(dev).train(); opt = torch.optim.AdamW(m.parameters())
with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8, max_name_column_width=60))
