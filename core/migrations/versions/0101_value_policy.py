"""value policy: customer value measures, survey expectation/perception, value runs,
win-back actions

Revision ID: 0101_value_policy
Revises: 0001
Create Date: 2026-12-02 18:50:00
"""
import sqlalchemy as sa
from alembic import op

import core.models

revision = '0101_value_policy'
down_revision = '0001'
branch_labels = None
depends_on = None

_MONEY = sa.Numeric(14, 2, asdecimal=False)


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('current_value', _MONEY, nullable=True))
        batch_op.add_column(sa.Column('service_cost', _MONEY, nullable=True))
        batch_op.add_column(sa.Column('value_cost_type', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('relationship_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('satisfaction', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('churn_reasons', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('value_policy_version', sa.String(length=40),
                                      nullable=True))
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('survey_expectation', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('survey_perception', sa.Integer(), nullable=True))
    op.create_table('value_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('policy_version', sa.String(length=40), nullable=False),
    sa.Column('started_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('customers', sa.Integer(), nullable=False),
    sa.Column('orders', sa.Integer(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_value_runs'))
    )
    op.create_table('winback_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('due_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.Integer(), nullable=True),
    sa.Column('created_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_winback_actions'))
    )
    with op.batch_alter_table('winback_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_winback_actions_customer_id'), ['customer_id'],
                              unique=False)
    # Existing data: the old model's "abandon" meant "below the median"; leave the
    # stored classes as they are and let the next `callcenter segment` rescore them.


def downgrade() -> None:
    with op.batch_alter_table('winback_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_winback_actions_customer_id'))
    op.drop_table('winback_actions')
    op.drop_table('value_runs')
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_column('survey_perception')
        batch_op.drop_column('survey_expectation')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        for column in ('value_policy_version', 'churn_reasons', 'satisfaction',
                       'relationship_days', 'value_cost_type', 'service_cost',
                       'current_value'):
            batch_op.drop_column(column)
