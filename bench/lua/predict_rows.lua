-- POST one bare iris row to our model server's /predict.
-- bench/serving.py reads the body below for its prediction check: keep it on one line.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [=[[[5.1,3.5,1.4,0.2]]]=]
