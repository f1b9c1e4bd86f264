"""The TradingView UDF datafeed (``UDF_PATH``, default ``/udf``): the charts' series served to the
Charting Library / Advanced Charts through its stock ``UDFCompatibleDatafeed`` adapter."""
