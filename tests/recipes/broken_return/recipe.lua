-- forgot the table
return "workspace-audit"
