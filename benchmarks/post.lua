-- wrk script: POST a 10 KiB body on every request (benchmarks/apps_bench.py, "post-echo").
--
--   wrk -t1 -c64 -d5s -s benchmarks/post.lua http://127.0.0.1:8000/echo

wrk.method = "POST"
wrk.body = string.rep("x", 10240)
wrk.headers["Content-Type"] = "application/octet-stream"
