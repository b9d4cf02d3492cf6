"""Views of results: the HTML report, paper tables, the regression comparison."""
