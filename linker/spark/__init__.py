"""The Spark engine: annotation of DataFrames and of the project's inputs, and index embedding, on a cluster.

Install with ``pip install 'concept-linker[spark]'`` (pyspark, pandas, pyarrow; Java 17+). Nothing here
imports pyspark until it is used, so the rest of the project runs without it.
"""

from __future__ import annotations

from linker.spark.dataframe import annotate_dataframe
from linker.spark.records import COLUMNS, arrow_schema, spark_schema
from linker.spark.session import spark_session

__all__ = ["COLUMNS", "annotate_dataframe", "arrow_schema", "spark_schema", "spark_session"]
