-- POST one iris row in MLflow's `dataframe_split` scoring format (same body for both servers).
-- bench/serving.py reads the body below for its prediction check: keep it on one line.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [=[{"dataframe_split": {"columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"], "data": [[5.1, 3.5, 1.4, 0.2]]}}]=]
