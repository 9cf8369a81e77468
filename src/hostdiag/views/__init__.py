"""What people read: findings (rules that name what is wrong) and the text report."""
