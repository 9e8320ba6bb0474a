"""Coalescing concurrent requests to one model into shared compiled calls.

Each model has a queue. A worker takes the first waiting request and every request already queued,
then keeps collecting until the batch holds `max_batch` samples or its wait is over, and hands the lot
to `Sampler.run`, which groups compatible requests (equal `batch_key`) into one compiled call and
splits the results back in order. Sampling runs on one thread shared by all models (one accelerator);
the event loop only waits. Per-sample keys make a request's output independent of its batch partners.

The wait adapts to the model: a fifth of its recent sampling time, at most `max_wait_s` (a GAN's
millisecond call waits a fraction of a millisecond for partners; a language model's 100 ms decode
loop waits long enough for clients that are just sending their next request to join).
"""

import asyncio
import concurrent.futures
import time

from artjax.inference import Request, Sampler


class ModelQueue:
  """The request queue and batching worker of one served model."""

  def __init__(self, name: str, sampler: Sampler, device: concurrent.futures.Executor, max_batch: int,
               max_wait_s: float, observe=None):
    self.name, self.sampler, self.device = name, sampler, device
    self.max_batch, self.max_wait_s = int(max_batch), float(max_wait_s)
    self.observe = observe or (lambda **kw: None)  # metrics hook: batch sizes, queue depth
    self.queue: asyncio.Queue | None = None
    self.task = None
    self.run_seconds = 0.0  # moving average of a sampling run's duration

  def start(self):
    self.queue = asyncio.Queue()
    self.task = asyncio.get_running_loop().create_task(self._worker(), name=f"batcher-{self.name}")

  async def stop(self):
    if self.task:
      self.task.cancel()
      try:
        await self.task
      except asyncio.CancelledError:
        pass

  @property
  def depth(self) -> int:
    return self.queue.qsize() if self.queue else 0

  async def submit(self, request: Request):
    """The request's Samples, once its batch has run (exceptions of the run are re-raised here)."""
    future = asyncio.get_running_loop().create_future()
    await self.queue.put((request, future))
    self.observe(model=self.name, queue_depth=self.depth)
    return await future

  async def _worker(self):
    loop = asyncio.get_running_loop()
    while True:
      pending = [await self.queue.get()]
      rows = pending[0][0].num
      deadline = loop.time() + min(self.max_wait_s, 0.2 * self.run_seconds)
      while rows < self.max_batch:
        if not self.queue.empty():  # what is already waiting joins, whatever the deadline
          item = self.queue.get_nowait()
        else:
          timeout = deadline - loop.time()
          if timeout <= 0:
            break
          try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
          except asyncio.TimeoutError:
            break
        pending.append(item)
        rows += item[0].num
      pending = [(r, f) for r, f in pending if not f.cancelled()]  # clients that went away
      if not pending:
        continue
      self.observe(model=self.name, batch_size=rows, queue_depth=self.depth)
      t = time.perf_counter()
      try:
        results = await loop.run_in_executor(self.device, self.sampler.run, [r for r, _ in pending],
                                              self.max_batch)
      except Exception as e:  # noqa: BLE001
        if len(pending) == 1:
          if not pending[0][1].done():
            pending[0][1].set_exception(e)
          continue
        # One bad request must not fail its batch partners: run them one by one.
        results = []
        for r, f in pending:
          try:
            results.append((await loop.run_in_executor(self.device, self.sampler.run, [r], self.max_batch))[0])
          except Exception as e1:  # noqa: BLE001  delivered to that request only
            results.append(None)
            if not f.done():
              f.set_exception(e1)
      seconds = time.perf_counter() - t
      self.run_seconds = seconds if not self.run_seconds else 0.8 * self.run_seconds + 0.2 * seconds
      self.observe(model=self.name, run_seconds=seconds)
      for (_, f), result in zip(pending, results):
        if not f.done() and result is not None:
          f.set_result(result)
