"""`newsdesk bench`: how fast newsdesk is, part by part and end to end, on the machine it runs on.

One module per part, each returning rows of the one report (`report.Row`):

- `analyses`: each analysis alone, through the code the workers run (`workers.pipeline.Analyzers`);
- `endtoend`: the API, Redis and worker processes: submissions per second, articles per second with
  1, 2, ... worker processes draining a backlog queued beforehand (and, beside it, with the articles
  submitted while they run), latency from submission to `done`, and the bare-loop baseline (`bareloop`:
  the same analysis code on the same articles in a plain loop on 1, 2, ... processes);
- `duplicates`: the duplicate check against growing stored seed corpora, beside a brute-force scan;
- `memory`: peak resident memory of the API and worker processes (`processes.peak_rss`).

`runner.run_bench` runs the selected parts against a private Redis (`stack.BenchStack`).
"""
